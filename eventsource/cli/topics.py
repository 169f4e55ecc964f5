"""``eventsource topics create|list|describe``: events topics with the right settings.

Thin wrappers over :mod:`eventsource.kafka.admin`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from eventsource.cli.common import (
    BootstrapOpt,
    JsonOpt,
    PropertyOpt,
    emit_json,
    exit_codes,
    load_settings,
)
from eventsource.domain import Aggregate
from eventsource.errors import ConfigurationError, TopicNotFoundError
from eventsource.kafka.admin import (
    EVENTS_TOPIC_CONFIG,
    TopicInfo,
    describe_topic,
    end_offsets,
    ensure_topic,
    topic_partitions,
)
from eventsource.kafka.names import events_topic
from eventsource.service.loader import load_typed
from eventsource.service.settings import parse_properties
from eventsource.store.kafka.topic_policy import lossy_settings, lossy_topic_error

app = typer.Typer(help="Create, list and inspect events topics.", no_args_is_help=True)

AggregateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--aggregate",
        "-a",
        help="Aggregate class by import path (module:Class); its topic is "
        "<aggregate_type>.events. Repeatable.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for the broker.")]


def topics_of(names: list[str], aggregates: list[str]) -> list[str]:
    """Topic names given directly plus ``<aggregate_type>.events`` of each aggregate path."""
    topics = list(names)
    for path in aggregates:
        aggregate = load_typed(path, Aggregate, "an aggregate")
        topics.append(events_topic(aggregate.aggregate_type))
    if not topics:
        raise ConfigurationError("name at least one topic, or an aggregate with --aggregate")
    return topics


@app.command(
    epilog="Examples:\n\n"
    "  eventsource topics create --aggregate examples.bank.domain:Account --partitions 6\n\n"
    "  eventsource topics create orders.order.events -c min.insync.replicas=2 "
    "--replication-factor 3"
)
def create(
    names: Annotated[
        list[str] | None, typer.Argument(help="Topic names.", show_default=False)
    ] = None,
    aggregate: AggregateOpt = None,
    partitions: Annotated[int, typer.Option(min=1, help="Partition count (fixed forever).")] = 6,
    replication_factor: Annotated[
        int,
        typer.Option(
            help="Copies of each partition; -1: min(3, brokers), with min.insync.replicas=2 "
            "at three copies unless --config sets it."
        ),
    ] = -1,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config", "-c", help="Topic config key=value, repeatable.", show_default=False
        ),
    ] = None,
    timeout: TimeoutOpt = 30.0,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create events topics if missing: kept forever, never compacted.

    An existing topic with the same partition count is fine; another count is an error
    (exit 2), because re-partitioning would move aggregates between partitions.
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop)
        topics = topics_of(names or [], aggregate or [])
        topic_config = {**EVENTS_TOPIC_CONFIG, **parse_properties(config or [])}
        lossy = lossy_settings(topic_config)
        if lossy and not settings.kafka_unchecked.allow_lossy_events_topics:
            # The stores refuse such a topic at start: say so now, before creating it.
            options = " ".join(f"-c {k}={v}" for k, v in sorted(lossy.items()))
            raise lossy_topic_error(", ".join(topics), lossy, f"Drop {options}")
        results: list[dict[str, Any]] = []
        for topic in topics:
            existed = _exists(settings.kafka, topic, timeout)
            info = ensure_topic(
                settings.kafka,
                topic,
                partitions,
                config=topic_config,
                replication_factor=replication_factor,
                timeout=timeout,
            )
            results.append({"topic": topic, "created": not existed, "partitions": info.partitions})
        if json_out:
            emit_json(results)
            return
        for row in results:
            state = "created" if row["created"] else "already exists"
            typer.echo(f"{row['topic']}: {state} ({row['partitions']} partitions)")


def _exists(kafka: Any, topic: str, timeout: float) -> bool:
    try:
        describe_topic(kafka, topic, timeout=timeout)
    except TopicNotFoundError:
        return False
    return True


@app.command(
    "list",
    epilog="Examples:\n\n  eventsource topics list\n\n"
    "  eventsource topics list --json | jq '.[].topic'",
)
def list_(
    timeout: TimeoutOpt = 10.0,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The cluster's topics (Kafka's internal __ topics left out) and their partition counts.

    Events topics are named <aggregate_type>.events; a projection's dead letters go to
    <projection>.dlq.
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop)
        topics = topic_partitions(settings.kafka, timeout=timeout)
    if json_out:
        emit_json([{"topic": name, "partitions": n} for name, n in topics.items()])
        return
    if not topics:
        typer.echo(f"no topics on {settings.kafka.bootstrap_servers}")
        return
    table = Table("topic", "partitions")
    for name, n in topics.items():
        table.add_row(name, str(n))
    Console().print(table)


def replication_warnings(info: TopicInfo) -> list[str]:
    """What is unsafe about an events topic's replication on the cluster it lives on."""
    if not info.name.endswith(".events") or info.brokers < 3:
        return []
    warnings = []
    if info.replication_factor < 3:
        warnings.append(
            f"{info.name} has replication factor {info.replication_factor} on a cluster of "
            f"{info.brokers} brokers: losing one broker can lose acknowledged events. "
            "Recreate it with 3 replicas (or add replicas with kafka-reassign-partitions)"
        )
    elif info.min_insync_replicas < 2:
        warnings.append(
            f"{info.name} has min.insync.replicas={info.min_insync_replicas}"
            ": an acknowledged append may live on one broker only. Set it to 2 "
            "(kafka-configs --alter --add-config min.insync.replicas=2)"
        )
    return warnings


@app.command(epilog="Example: eventsource topics describe bank.account.events --json")
def describe(
    topic: Annotated[str, typer.Argument(help="Topic name.")],
    timeout: TimeoutOpt = 10.0,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Partition count, replication, settings and end offset of every partition."""
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop)
        info = describe_topic(settings.kafka, topic, timeout=timeout)
        ends = end_offsets(settings.kafka, topic, timeout=timeout)
        warnings = replication_warnings(info)
        data = {
            "topic": info.name,
            "partitions": info.partitions,
            "replication_factor": info.replication_factor,
            "config": info.config,
            "end_offsets": {str(p): o for p, o in sorted(ends.items())},
            "brokers": info.brokers,
            "warnings": warnings,
        }
        if json_out:
            emit_json(data)
            return
        console = Console()
        settings_line = "  ".join(f"{k}={v}" for k, v in sorted(info.config.items()))
        console.print(
            f"[bold]{info.name}[/bold]  partitions={info.partitions}  "
            f"replication={info.replication_factor}  {settings_line}",
            highlight=False,
        )
        for warning in warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        table = Table("partition", "end offset")
        for p, offset in sorted(ends.items()):
            table.add_row(str(p), str(offset))
        console.print(table)
