"""``eventsource status|replay|rebuild``: where projections stand, and rebuilding them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from eventsource.cli.common import (
    BootstrapOpt,
    DatabaseOpt,
    JsonOpt,
    PropertyOpt,
    emit_json,
    exit_codes,
    load_settings,
)
from eventsource.cli.projecting import (
    BatchSizeOpt,
    Interrupted,
    NameOpt,
    ProgressOpt,
    ProjectionArg,
    TimeoutOpt,
    TopicsOpt,
    VersionOpt,
    command_line,
    load_projection,
    parse_bound,
    progress_bar,
    resumable,
)
from eventsource.projection import projection_status
from eventsource.projection.rebuild import rebuild as rebuild_version
from eventsource.projection.replay import replay as replay_range
from eventsource.projection.status import projection_versions
from eventsource.service.follow import at_version
from eventsource.service.supervisor import ExitCode


def status(
    projection: Annotated[
        list[str], typer.Argument(help="Projections by import path (module:attribute).")
    ],
    max_lag: Annotated[
        int | None,
        typer.Option(
            help="Exit 1 when any partition lags more than this (for scripts and probes).",
            show_default=False,
        ),
    ] = None,
    name: NameOpt = None,
    version: Annotated[
        int | None,
        typer.Option(
            "--projection-version",
            min=1,
            help="Only this version [default: every version the database knows].",
            show_default=False,
        ),
    ] = None,
    topic: TopicsOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Per projection, version and partition: checkpoint, end offset and lag.

    Reads the checkpoints from the read-model database and the end offsets from Kafka; no
    runner needs to be running. Lists every version the database knows and marks the live
    one; --max-lag judges the live version (or the --projection-version given). Creates
    nothing: a database that does not exist is an error (exit 2).

    Example: eventsource status examples.bank.projections:AccountBalances --json
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop, database_url)
        single = len(projection) == 1
        rows: list[dict[str, Any]] = []
        judged: list[int] = []  # lags --max-lag looks at: the live (or asked) version's
        for path in projection:
            base = load_projection(
                path, name=name if single else None, topics=topic if single else None
            )
            db = settings.service.database_url
            versions, live = projection_versions(base, db)
            if version is not None and single:
                versions = [version]
            judged_version = version if version is not None and single else live or base.version
            for v in versions:
                p = at_version(base, v)
                for s in projection_status(p, settings.kafka, db):
                    if v == judged_version:
                        judged.append(s.lag)
                    rows.append(
                        {
                            "projection": p.name,
                            "version": p.version,
                            "live": v == live,
                            "topic": s.topic,
                            "partition": s.partition,
                            "checkpoint": s.checkpoint,
                            "end_offset": s.end_offset,
                            "lag": s.lag,
                        }
                    )
        if json_out:
            emit_json(rows)
        else:
            table = Table("projection", "version", "topic", "partition", "checkpoint", "end", "lag")
            for r in rows:
                table.add_row(
                    r["projection"],
                    f"{r['version']} (live)" if r["live"] else str(r["version"]),
                    r["topic"],
                    str(r["partition"]),
                    str(r["checkpoint"]),
                    str(r["end_offset"]),
                    str(r["lag"]),
                )
            console = Console()
            console.print(table)
            console.print(f"total lag: {sum(judged)}", highlight=False)
        if max_lag is not None and any(lag > max_lag for lag in judged):
            raise typer.Exit(int(ExitCode.FAILURE))


def replay(
    projection: ProjectionArg,
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="First record: beginning, an offset (every partition) or an ISO-8601 time.",
        ),
    ] = "beginning",
    end: Annotated[
        str,
        typer.Option(
            "--to",
            help="Last record (inclusive): end (as of now), an offset or an ISO-8601 time.",
        ),
    ] = "end",
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Resume: keep the tables and continue from the committed checkpoints "
            "(after an interrupted replay; exact, each record applied once).",
        ),
    ] = False,
    batch_size: BatchSizeOpt = 5000,
    timeout: TimeoutOpt = 3600.0,
    progress: ProgressOpt = True,
    name: NameOpt = None,
    version: VersionOpt = None,
    topic: TopicsOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild a projection version's tables in place from a range of its topics.

    Empties the version's tables, sets its checkpoints to the start and applies the range
    exactly once. Interrupted (Ctrl-C, SIGTERM), it prints how far it got; run it again
    with --keep to resume from the committed checkpoints. Stop the version's running
    service first; to rebuild without readers seeing the tables refill, use 'eventsource
    rebuild' (blue/green).

    Examples:

      eventsource replay examples.bank.projections:AccountBalances

      eventsource replay app.read:Balances --from 2026-01-31T00:00:00Z --to 120000
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop, database_url)
        p = load_projection(projection, name=name, version=version, topics=topic)
        from_offset, from_time = parse_bound(start, "--from")
        to_offset, to_time = parse_bound(end, "--to")
        label = f"replay {p.name} v{p.version}"
        with progress_bar(label, progress and not json_out) as report:
            tracker = Interrupted(report)
            with resumable(label, command_line("--keep"), tracker):
                result = replay_range(
                    p,
                    settings.kafka,
                    settings.service.database_url,
                    from_offset=from_offset,
                    from_time=from_time,
                    to_offset=to_offset,
                    to_time=to_time,
                    reset=not keep,
                    batch_size=batch_size,
                    progress=tracker,
                    timeout=timeout,
                )
        summary = {
            "projection": p.name,
            "version": p.version,
            "events": result.events,
            "applied": result.applied,
            "ignored": result.ignored,
            "dead_lettered": result.dead_lettered,
            "seconds": round(result.seconds, 3),
            "checkpoints": {f"{t}[{n}]": o for (t, n), o in sorted(result.checkpoints.items())},
        }
        if json_out:
            emit_json(summary)
        else:
            rate = result.events / result.seconds if result.seconds > 0 else 0.0
            typer.echo(
                f"replayed {p.name} v{p.version}: {result.events} events "
                f"({result.applied} applied, {result.dead_lettered} dead-lettered) "
                f"in {result.seconds:.1f}s ({rate:,.0f} events/s)"
            )


def rebuild(
    projection: ProjectionArg,
    version: VersionOpt = None,
    swap: Annotated[
        bool,
        typer.Option("--swap/--no-swap", help="Make the new version live once caught up."),
    ] = True,
    restart: Annotated[
        bool, typer.Option("--restart", help="Empty the new version's tables first.")
    ] = False,
    batch_size: BatchSizeOpt = 5000,
    timeout: TimeoutOpt = 3600.0,
    progress: ProgressOpt = True,
    name: NameOpt = None,
    topic: TopicsOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Blue/green: build a new projection version beside the live one, then swap.

    The new version (the projection's `version`, or --projection-version) fills its own
    tables while the live version keeps serving; once it has caught up, the views flip to
    it in one transaction. An interrupted rebuild resumes. A running 'eventsource run' of
    the projection follows the swap by itself (unless pinned with --projection-version).

    Example: eventsource rebuild examples.bank.projections:AccountBalances --projection-version 2
    """
    with exit_codes():
        settings = load_settings(bootstrap_servers, prop, database_url)
        p = load_projection(projection, name=name, version=version, topics=topic)
        label = f"rebuild {p.name} v{p.version}"
        with progress_bar(label, progress and not json_out) as report:
            tracker = Interrupted(report)
            # a rebuild resumes by itself; --restart would throw the work away
            resume = command_line().replace(" --restart", "")
            with resumable(label, resume, tracker):
                result = rebuild_version(
                    p,
                    settings.kafka,
                    settings.service.database_url,
                    swap=swap,
                    restart=restart,
                    batch_size=batch_size,
                    progress=tracker,
                    timeout=timeout,
                )
        summary = {
            "projection": result.projection,
            "version": result.version,
            "previous_version": result.previous_version,
            "swapped": result.swapped,
            "rounds": result.rounds,
            "applied": result.applied,
            "seconds": round(result.seconds, 3),
        }
        if json_out:
            emit_json(summary)
            return
        state = "is live" if result.swapped else "is built, not live (swap later)"
        before = f" (was v{result.previous_version})" if result.previous_version else ""
        typer.echo(
            f"rebuilt {result.projection} v{result.version}: {result.applied} events applied "
            f"in {result.rounds} round(s), {result.seconds:.1f}s; v{result.version} {state}"
            f"{before}"
        )
