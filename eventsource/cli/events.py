"""``eventsource events tail|show``: read events topics, decoded, as text or JSON lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException

from eventsource.cli.common import (
    BootstrapOpt,
    JsonOpt,
    PropertyOpt,
    emit_json,
    exit_codes,
    kafka_error,
    load_settings,
)
from eventsource.cli.reading import StartAt, human_line, open_reader, record_json, records
from eventsource.codec import EventCodec
from eventsource.domain import Aggregate, Event
from eventsource.errors import ConfigurationError
from eventsource.kafka.names import events_topic
from eventsource.service.loader import load_typed
from eventsource.store.partitioner import partition_for_id

app = typer.Typer(help="Read events topics, decoded to text or JSON lines.", no_args_is_help=True)

AggregateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--aggregate",
        "-a",
        help="Aggregate class by import path (module:Class): decodes its events and names "
        "its topic (<aggregate_type>.events). Repeatable.",
        show_default=False,
    ),
]
SchemasOpt = Annotated[
    Path | None,
    typer.Option(
        "--schemas",
        help="Directory of .avsc files: older writer schemas of the events.",
        exists=True,
        file_okay=False,
        show_default=False,
    ),
]
TopicOpt = Annotated[
    str | None,
    typer.Option(
        "--topic",
        "-t",
        help="Topic to read.",
        show_default="the aggregate's events topic",
    ),
]


def _aggregates(paths: list[str]) -> list[type[Aggregate]]:
    found: list[type[Aggregate]] = []
    for path in paths:
        aggregate = load_typed(path, Aggregate, "an aggregate")
        found.append(aggregate if isinstance(aggregate, type) else type(aggregate))
    return found


def _codec(aggregates: list[type[Aggregate]], schemas: Path | None) -> EventCodec | None:
    if not aggregates:
        return None
    types: list[type[Event]] = [t for a in aggregates for t in a.event_types()]
    return EventCodec.for_events(types, schema_dir=schemas)


def _topic(topic: str | None, aggregates: list[type[Aggregate]]) -> str:
    if topic:
        return topic
    if len(aggregates) == 1:
        return events_topic(aggregates[0].aggregate_type)
    raise ConfigurationError(
        "name the topic with --topic, or give exactly one --aggregate whose events topic to read"
    )


@app.command(
    epilog="Examples:\n\n"
    "  eventsource events tail --aggregate examples.bank.domain:Account\n\n"
    "  eventsource events tail -t bank.account.events -a examples.bank.domain:Account "
    "--from beginning --no-follow --json | jq .data\n\n"
    "  eventsource events tail -a examples.bank.domain:Account --from 2026-01-31T12:00:00Z"
)
def tail(
    topic: TopicOpt = None,
    aggregate: AggregateOpt = None,
    schemas: SchemasOpt = None,
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="Where to start: beginning, end, an offset (each partition) or an "
            "ISO-8601 timestamp.",
        ),
    ] = "end",
    partition: Annotated[
        list[int] | None,
        typer.Option("--partition", "-p", help="Only these partitions.", show_default=False),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep waiting for new events.")
    ] = True,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many records.", show_default=False)
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Follow a topic: each record decoded, with key, headers and position (Ctrl-C stops)."""
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop)
        aggregates = _aggregates(aggregate or [])
        codec = _codec(aggregates, schemas)
        name = _topic(topic, aggregates)
        at = StartAt.parse(start)
        consumer, parts = open_reader(settings.kafka, name, partition, at)
        count = 0
        try:
            for msg in records(consumer, parts, follow=follow):
                row = record_json(msg, codec)
                if json_out:
                    emit_json(row)
                else:
                    typer.echo(human_line(row))
                count += 1
                if limit is not None and count >= limit:
                    break
        except KeyboardInterrupt:
            pass
        except KafkaException as exc:
            raise kafka_error(exc, f"reading {name!r} failed") from exc
        finally:
            consumer.close()


@app.command(
    epilog="Example: eventsource events show acc-42 --aggregate examples.bank.domain:Account --json"
)
def show(
    aggregate_id: Annotated[str, typer.Argument(help="The aggregate id (the record key).")],
    aggregate: AggregateOpt = None,
    topic: TopicOpt = None,
    schemas: SchemasOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One aggregate's stream, oldest first: reads the one partition that holds its id.

    The partition is Kafka's default (murmur2) choice for the id, as the event store writes
    it; the partition is scanned from its start, so this is a debugging tool, not a query.
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop)
        aggregates = _aggregates(aggregate or [])
        codec = _codec(aggregates, schemas)
        name = _topic(topic, aggregates)
        consumer, parts = open_reader(settings.kafka, name, None, StartAt("end"))
        count = 0
        try:
            home = partition_for_id(aggregate_id, len(parts))
            consumer.close()
            consumer, parts = open_reader(settings.kafka, name, [home], StartAt("beginning"))
            key = aggregate_id.encode("utf-8")
            for msg in records(consumer, parts, follow=False):
                if msg.key() != key:
                    continue
                row = record_json(msg, codec)
                if json_out:
                    emit_json(row)
                else:
                    typer.echo(human_line(row))
                count += 1
        finally:
            consumer.close()
        if count == 0:
            raise _not_found(aggregate_id, name, home)


def _not_found(aggregate_id: str, topic: str, partition: int) -> Exception:
    from eventsource.errors import AggregateNotFoundError

    return AggregateNotFoundError(
        f"aggregate {aggregate_id!r} has no events in {topic}[{partition}]: check the id "
        "and the topic (--topic / --aggregate)"
    )
