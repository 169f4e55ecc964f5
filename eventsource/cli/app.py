"""The ``eventsource`` command: a thin Typer shell over the library's composition functions."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="eventsource",
    help="Kafka as a correct event store: topics, events, projections, replay, services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Sub-command groups register themselves here; each lives in its own module.
    from eventsource.cli import dev

    app.add_typer(dev.app, name="dev")


def main() -> None:
    """Console-script entry point."""
    _register()
    app()


if __name__ == "__main__":
    main()
