"""``eventsource schemas generate|check``: the event schemas released in ``schemas/``.

Both take module paths (``examples.bank.domain``); every :class:`Event` subclass defined
in those modules is an event model, and every :class:`Upcasters` registry found there
(plus the ``@upcaster`` default registry) counts when checking.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from eventsource.cli.common import exit_codes
from eventsource.codec.compatibility import CompatibilityMode
from eventsource.codec.files import check_schema_files, write_schema_files
from eventsource.codec.upcasting import DEFAULT_UPCASTERS, Upcasters
from eventsource.domain import Event
from eventsource.errors import ConfigurationError

app = typer.Typer(
    help="Generate the event schemas (.avsc) and check compatibility.", no_args_is_help=True
)

ModulesArg = Annotated[
    list[str],
    typer.Argument(
        help="Modules whose Event subclasses are the event models, e.g. examples.bank.domain",
        show_default=False,
    ),
]
DirOpt = Annotated[Path, typer.Option("--dir", "-d", help="Directory of the released .avsc files.")]


def discover(modules: list[str]) -> tuple[list[type[Event]], Upcasters]:
    """Event models defined in ``modules`` and every upcaster registry they hold."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:  # like `python -m`: a project's own modules import from its root
        sys.path.insert(0, cwd)
    models: dict[type[Event], None] = {}
    upcasters = DEFAULT_UPCASTERS
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"cannot import module {name!r}: {exc}; give a module path such as "
                "examples.bank.domain, from the project's root"
            ) from exc
        except Exception as exc:  # a user module that fails while importing
            raise ConfigurationError(
                f"importing module {name!r} failed with {type(exc).__name__}: {exc}"
            ) from exc
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Event)
                and value is not Event
                and value.__module__ == module.__name__
            ):
                models[value] = None
            elif isinstance(value, Upcasters) and value is not DEFAULT_UPCASTERS:
                upcasters = upcasters.merged(value)
    if not models:
        raise ConfigurationError(
            f"no Event subclass is defined in {', '.join(modules)}: name the modules that "
            "define the event models"
        )
    return list(models), upcasters


@app.command(epilog="Example:\n\n  eventsource schemas generate examples.bank.domain --dir schemas")
def generate(modules: ModulesArg, directory: DirOpt = Path("schemas")) -> None:
    """Write a new .avsc version for every new or changed event model.

    Released files are never rewritten: a changed model gets the next version.
    """
    with exit_codes():
        models, _ = discover(modules)
        written = write_schema_files(models, directory)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(written)} new schema file(s), {len(models)} event type(s) in {directory}")


@app.command(
    epilog="Examples:\n\n"
    "  eventsource schemas check examples.bank.domain --dir schemas\n\n"
    "  eventsource schemas check app.events --mode FULL_TRANSITIVE"
)
def check(
    modules: ModulesArg,
    directory: DirOpt = Path("schemas"),
    mode: Annotated[
        CompatibilityMode,
        typer.Option(
            "--mode",
            "-m",
            case_sensitive=False,
            help="Compatibility the models must keep with their released versions.",
        ),
    ] = CompatibilityMode.BACKWARD,
) -> None:
    """Fail (exit 1) when a model drifted from its latest file or breaks compatibility.

    Prints one line per problem, naming the event type and the field.
    """
    with exit_codes():
        models, upcasters = discover(modules)
        if not directory.is_dir():
            raise ConfigurationError(
                f"schema directory {directory} does not exist: run `eventsource schemas "
                "generate` first or pass --dir"
            )
        problems = check_schema_files(models, directory, mode, upcasters)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{len(models)} event type(s) match {directory} and are {mode.value} compatible")
