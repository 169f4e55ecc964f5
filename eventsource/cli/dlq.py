"""``eventsource dlq list|replay|discard|unpark``: a projection's dead-letter topic."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from eventsource.cli.common import (
    BootstrapOpt,
    DatabaseOpt,
    JsonOpt,
    PropertyOpt,
    emit_json,
    exit_codes,
    load_settings,
)
from eventsource.cli.projecting import NameOpt, ProjectionArg, VersionOpt, load_projection
from eventsource.errors import ConfigurationError
from eventsource.projection.deadletter import (
    DeadLetterRecord,
    DiscardResult,
    discard_dead_letters,
    dlq_topic,
    list_dead_letters,
    replay_dead_letters,
    unpark_aggregates,
)

app = typer.Typer(help="Inspect and replay a projection's dead letters.", no_args_is_help=True)


OffsetsOpt = Annotated[
    str | None,
    typer.Option(
        "--offsets",
        metavar="FIRST-LAST",
        help="DLQ offsets as `dlq list` shows them (both ends included), e.g. 10-20 or 7.",
        show_default=False,
    ),
]
DlqPartitionOpt = Annotated[int, typer.Option("--dlq-partition", min=0, help="DLQ partition.")]
ReasonOpt = Annotated[
    str | None,
    typer.Option(help="Why (recorded with each discarded dead letter).", show_default=False),
]
DlqTimeoutOpt = Annotated[float, typer.Option(help="Seconds to read the DLQ.")]


def record_dict(record: DeadLetterRecord) -> dict[str, Any]:
    """A dead letter as JSON-ready data (payload left out; its size is shown)."""
    headers = {
        k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in record.headers
    }
    return {
        "dlq_partition": record.dlq_partition,
        "dlq_offset": record.dlq_offset,
        "source": {
            "topic": record.source.topic,
            "partition": record.source.partition,
            "offset": record.source.offset,
        },
        "aggregate_id": record.aggregate_id,
        "type": headers.get("ce_type"),
        "stage": record.stage,
        "exception": record.exception_class,
        "message": record.exception_message,
        "projection_version": record.projection_version,
        "dead_lettered_at": record.dead_lettered_at.isoformat()
        if record.dead_lettered_at
        else None,
        "value_bytes": len(record.value or b""),
    }


@app.command(
    "list",
    epilog="Example: eventsource dlq list examples.bank.projections:AccountBalances --json",
)
def list_(
    projection: ProjectionArg,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Show at most this many.", show_default=False)
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Include other projection versions' letters.")
    ] = False,
    name: NameOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Dead letters of a projection (its <name>.dlq topic), oldest first."""
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop)
        p = load_projection(projection, name=name)
        records = list_dead_letters(
            settings.kafka,
            p.name,
            limit=limit,
            version=None if all_versions else p.version,
            topic_prefix=p.topic_prefix,
        )
        rows = [record_dict(r) for r in records]
        if json_out:
            emit_json(rows)
            return
        if not rows:
            typer.echo(f"no dead letters in {dlq_topic(p.name, p.topic_prefix)}")
            return
        header = ("DLQ", "SOURCE", "AGGREGATE", "TYPE", "STAGE", "DEAD-LETTERED AT", "ERROR")
        table: list[tuple[str, ...]] = [
            (
                f"{r['dlq_partition']}@{r['dlq_offset']}",
                f"{r['source']['topic']}[{r['source']['partition']}]@{r['source']['offset']}",
                r["aggregate_id"] or "-",
                r["type"] or "?",
                r["stage"] or "-",
                r["dead_lettered_at"] or "-",
                error_text(r),
            )
            for r in rows
        ]
        for line in aligned(header, table):
            typer.echo(line)
        typer.echo(f"{len(rows)} dead letter(s) in {dlq_topic(p.name)}")


def aligned(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Plain columns, the last one unbounded: greppable, never truncated to a terminal."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in [header, *rows]
    ]


def error_text(row: dict[str, Any]) -> str:
    """The error column: ``Class: message``, or why a record without one is here."""
    if row["exception"]:
        return f"{row['exception']}: {row['message']}" if row["message"] else row["exception"]
    if row["stage"] == "parked":
        return "parked: an earlier record of this aggregate is a dead letter"
    return row["message"] or "-"


@app.command(
    "replay",
    epilog="Example: eventsource dlq replay examples.bank.projections:AccountBalances "
    "-d sqlite:///balances.db",
)
def replay(
    projection: ProjectionArg,
    timeout: DlqTimeoutOpt = 60.0,
    name: NameOpt = None,
    version: VersionOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply a projection's dead letters again, after fixing the handler or the data.

    Records are applied in source order, each exactly once (a second replay applies
    nothing twice). A record that still fails follows the projection's policy: STOP exits
    3, SKIP/PARK dead-letter it again for a later replay.
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop, database_url)
        p = load_projection(projection, name=name, version=version)
        result = replay_dead_letters(
            p, settings.kafka, settings.service.database_url, timeout=timeout
        )
        summary = {
            "projection": p.name,
            "version": p.version,
            "applied": result.applied,
            "ignored": result.ignored,
            "duplicates": result.duplicates,
            "other_version": result.other_version,
            "dead_lettered_again": result.dead_lettered_again,
            "orphans": result.orphans,
            "discarded": result.discarded,
            "unparked": [list(a) for a in result.unparked],
        }
        if json_out:
            emit_json(summary)
            return
        typer.echo(
            f"{p.name} v{p.version}: {result.applied} dead letters applied, "
            f"{result.dead_lettered_again} failed again, {result.duplicates} already applied, "
            f"{len(result.unparked)} aggregates unparked"
        )


def parse_offsets(text: str | None, partition: int) -> tuple[int, int, int] | None:
    """``FIRST-LAST`` or ``N`` as (DLQ partition, first, last)."""
    if text is None:
        return None
    first, _, last = text.partition("-")
    try:
        return partition, int(first), int(last or first)
    except ValueError:
        raise ConfigurationError(
            f"--offsets {text!r} is not FIRST-LAST or a single offset (e.g. 10-20 or 7)"
        ) from None


def _report(p_name: str, version: int, what: str, result: DiscardResult, json_out: bool) -> None:
    summary = {
        "projection": p_name,
        "version": version,
        "discarded": [[s.topic, s.partition, s.offset] for s in result.discarded],
        "settled_before": result.settled_before,
        "unparked": [list(a) for a in result.unparked],
        "still_parked": [list(a) for a in result.still_parked],
    }
    if json_out:
        emit_json(summary)
        return
    typer.echo(
        f"{p_name} v{version}: {len(result.discarded)} dead letters {what}, "
        f"{result.settled_before} were already applied or discarded, "
        f"{len(result.unparked)} aggregates unparked"
    )
    for topic, aggregate in result.still_parked:
        typer.echo(
            f"still parked: {aggregate} ({topic}): a newer record was diverted meanwhile; "
            "run the command again",
            err=True,
        )


@app.command(
    "discard",
    epilog="Example: eventsource dlq discard examples.bank.projections:AccountBalances "
    "--aggregate acc-42 --reason 'compensated by hand' -d sqlite:///balances.db",
)
def discard(
    projection: ProjectionArg,
    aggregate: Annotated[
        str | None,
        typer.Option(help="Discard this aggregate's dead letters.", show_default=False),
    ] = None,
    offsets: OffsetsOpt = None,
    dlq_partition: DlqPartitionOpt = 0,
    all_letters: Annotated[
        bool, typer.Option("--all", help="Discard every pending dead letter of this version.")
    ] = False,
    reason: ReasonOpt = None,
    timeout: DlqTimeoutOpt = 60.0,
    name: NameOpt = None,
    version: VersionOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give dead letters up: `dlq replay` will never apply them.

    Select by aggregate, by DLQ offset range, or --all. The dead letters stay on the DLQ
    topic; the read-model database records them as discarded. A parked aggregate whose
    dead letters are then all applied or discarded is unparked.
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop, database_url)
        p = load_projection(projection, name=name, version=version)
        result = discard_dead_letters(
            p,
            settings.kafka,
            settings.service.database_url,
            aggregate_id=aggregate,
            dlq_offsets=parse_offsets(offsets, dlq_partition),
            everything=all_letters,
            reason=reason or "discarded with `eventsource dlq discard`",
            timeout=timeout,
        )
        _report(p.name, p.version, "discarded", result, json_out)


@app.command(
    "unpark",
    epilog="Example: eventsource dlq unpark examples.bank.projections:AccountBalances "
    "--aggregate acc-42 -d sqlite:///balances.db",
)
def unpark(
    projection: ProjectionArg,
    aggregate: Annotated[
        list[str] | None,
        typer.Option(help="Unpark this aggregate. Repeatable.", show_default=False),
    ] = None,
    offsets: OffsetsOpt = None,
    dlq_partition: DlqPartitionOpt = 0,
    reason: ReasonOpt = None,
    timeout: DlqTimeoutOpt = 60.0,
    name: NameOpt = None,
    version: VersionOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Unpark aggregates now, discarding their pending dead letters.

    The runner then applies the aggregates' new events; `dlq replay` never applies the
    discarded ones. Select by aggregate, or by DLQ offset range (every aggregate with a
    dead letter there).
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop, database_url)
        p = load_projection(projection, name=name, version=version)
        result = unpark_aggregates(
            p,
            settings.kafka,
            settings.service.database_url,
            aggregate_ids=tuple(aggregate or ()),
            dlq_offsets=parse_offsets(offsets, dlq_partition),
            reason=reason or "unparked with `eventsource dlq unpark`",
            timeout=timeout,
        )
        _report(p.name, p.version, "discarded", result, json_out)
