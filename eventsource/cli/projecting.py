"""Shared pieces of the projection commands: loading projections, progress, bounds."""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from eventsource.cli.reading import StartAt
from eventsource.errors import ConfigurationError
from eventsource.projection import Projection
from eventsource.projection.replay import ReplayProgress
from eventsource.service.loader import load_object

ProjectionArg = Annotated[
    str,
    typer.Argument(
        help="Projection by import path, module:attribute (a Projection class or instance)."
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name", help="Override the projection's name (tables, group).", show_default=False
    ),
]
TopicsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--topic",
        "-t",
        help="Read these topics instead of the projection's own. Repeatable.",
        show_default=False,
    ),
]
VersionOpt = Annotated[
    int | None,
    typer.Option(
        "--projection-version", min=1, help="Override the projection's version.", show_default=False
    ),
]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Records per transaction.")]
TimeoutOpt = Annotated[float, typer.Option(help="Give up after this many seconds.")]
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
]


def load_projection(
    path: str,
    *,
    name: str | None = None,
    version: int | None = None,
    topics: Sequence[str] | None = None,
) -> Projection:
    """The projection at ``path`` (class or instance), with optional overrides."""
    obj = load_object(path)
    if isinstance(obj, type) and issubclass(obj, Projection):
        cls: type[Projection] = obj
        base: Projection | None = None
    elif isinstance(obj, Projection):
        cls, base = type(obj), obj
    else:
        raise ConfigurationError(
            f"{path!r} is {obj!r}, which is not a projection: point it at a "
            "eventsource.projection.Projection subclass or instance"
        )
    if base is not None and name is None and version is None and not topics:
        return base
    return cls(
        name=name or (base.name if base else None),
        version=version or (base.version if base else None),
        topics=list(topics) if topics else (list(base.topics) if base else None),
        topic_prefix=base.topic_prefix if base else None,
    )


def load_projections(
    paths: Sequence[str],
    name: str | None,
    topics: Sequence[str] | None,
    version: int | None = None,
) -> list[Projection]:
    """Several projections; ``--name`` / ``--topic`` / ``--projection-version`` overrides
    only make sense for one."""
    if len(paths) > 1 and (name or topics or version):
        raise ConfigurationError(
            "--name, --topic and --projection-version override one projection; run one "
            "process per override"
        )
    return [load_projection(path, name=name, topics=topics, version=version) for path in paths]


def parse_bound(spec: str | None, what: str) -> tuple[int | None, datetime | None]:
    """``--from`` / ``--to`` into (offset, time); ``beginning`` / ``end`` mean no bound."""
    if spec is None or spec in {"beginning", "earliest", "end", "latest"}:
        return None, None
    start = StartAt.parse(spec)
    if start.kind == "offset":
        return start.value, None
    if start.kind == "timestamp":
        return None, datetime.fromtimestamp(start.value / 1000, tz=UTC)
    raise ConfigurationError(f"{what} {spec!r} is not understood")


#: What the bar counts: positions in the topics, so transaction markers count too; the
#: summary line afterwards counts events.
UNIT = "offsets"


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate", 0.0)
        return Text(f"{rate:,.0f} {UNIT}/s", style="progress.data.speed")


class _Left(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.fields.get('lag', 0):,} left", style="progress.remaining")


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr fed by :class:`ReplayProgress` reports; None if off.

    The bar appears with the first report, when the total is known: never a ``0/?`` frame.
    """
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(UNIT),
        _Rate(),
        _Left(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: list[TaskID] = []

    def report(p: ReplayProgress) -> None:
        if not tasks:
            tasks.append(progress.add_task(label, total=p.events_total, rate=0.0, lag=0))
            progress.start()
        progress.update(
            tasks[0], completed=p.events_done, total=p.events_total, rate=p.rate, lag=p.lag_left
        )

    try:
        yield report
    finally:
        if tasks:
            progress.stop()


class Interrupted:
    """Remembers the last progress report, so an interrupted run can say how far it got."""

    def __init__(self, report: Callable[[ReplayProgress], None] | None) -> None:
        self._report = report
        self.last: ReplayProgress | None = None

    def __call__(self, progress: ReplayProgress) -> None:
        self.last = progress
        if self._report is not None:
            self._report(progress)


@contextmanager
def resumable(what: str, resume: str, tracker: Interrupted) -> Iterator[None]:
    """SIGINT/SIGTERM stop the work between batches' commits: print how far it got and the
    command that resumes it, then exit 130. Committed batches stay committed."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        last = tracker.last
        done = (
            "before the first batch committed"
            if last is None
            else f"after {last.events_done:,} of {last.events_total:,} records"
        )
        sys.stderr.write(
            f"\n{what} interrupted {done}; every committed batch is kept with its "
            f"checkpoints. Resume with:\n  {resume}\n"
        )
        sys.stderr.flush()
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def command_line(extra: str | None = None) -> str:
    """This invocation as a shell command, with ``extra`` appended if not already there."""
    args = ["eventsource", *sys.argv[1:]]
    if extra is not None and extra not in args:
        args.append(extra)
    return shlex.join(args)
