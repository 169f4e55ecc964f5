"""The ``eventsource`` command: a thin Typer shell over the library's composition functions.

Exit codes (:class:`~eventsource.service.supervisor.ExitCode`): 0 ok, 1 operational
failure, 2 usage or configuration error, 3 a projection stopped at a poison record, 130
interrupted.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from eventsource.cli.common import LIBRDKAFKA_LOG, connect_timeout

app = typer.Typer(
    name="eventsource",
    help="Kafka as a correct event store: topics, events, projections, replay, services.\n\n"
    "Settings come from EVENTSOURCE_* environment variables, overridden by flags. "
    "Exit codes: 0 ok, 1 operational failure (broker or database unreachable), "
    "2 usage or configuration error (a missing topic included), "
    "3 a projection stopped at a poison record, 130 interrupted (Ctrl-C).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the Kafka client's own log lines.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            help="Seconds a command waits for a broker to answer before it fails.",
            show_default="$EVENTSOURCE_CONNECT_TIMEOUT_S or 5",
        ),
    ] = None,
) -> None:
    connect_timeout[:] = [] if timeout is None else [timeout]
    # librdkafka logs every refused connection; one-shot commands report errors themselves.
    LIBRDKAFKA_LOG.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if verbose:
        logging.basicConfig(level=logging.INFO)


_registered = False


def _register() -> None:
    # Sub-command groups register themselves here; each lives in its own module.
    global _registered
    if _registered:
        return
    _registered = True
    from eventsource.cli import dlq, events, helptext, projections, run, schemas, topics

    helptext.install()

    app.add_typer(topics.app, name="topics")
    app.add_typer(events.app, name="events")
    app.command()(run.run)
    app.command()(projections.status)
    app.command()(projections.replay)
    app.command()(projections.rebuild)
    app.add_typer(dlq.app, name="dlq")
    app.add_typer(schemas.app, name="schemas")
    try:
        from eventsource.cli import dev
    except ImportError:  # the dev broker commands are optional in a trimmed install
        return
    app.add_typer(dev.app, name="dev")


def main() -> None:
    """Console-script entry point."""
    if _command(sys.argv[1:]) == "run":
        # A service may be told to stop while it is still importing: handle that from now.
        from eventsource.service.signals import stop_signals

        stop_signals()
    _register()
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:  # how click ends every command, with its exit code
        code = exc.code  # only the code: the exception's chain may hold a client's frames
    if code is None or isinstance(code, int):
        from eventsource.service.shutdown import leave

        # No Kafka client left running under interpreter shutdown (it could crash the
        # exit): the exit code stays the command's.
        leave(code or 0)
    raise SystemExit(code)


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


if __name__ == "__main__":
    main()
