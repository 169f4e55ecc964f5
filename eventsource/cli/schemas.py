"""``eventsource schemas generate|check``: the event schemas released in ``schemas/``.

Both take module paths (``examples.bank.domain``); every :class:`Event` subclass defined
in those modules is an event model, and every :class:`Upcasters` registry found there
(plus the ``@upcaster`` default registry) counts when checking. Without modules (and
without ``--dir``) they read the project's ``pyproject.toml``::

    [tool.eventsource]
    event-modules = ["examples.bank.domain"]
    schema-dir = "schemas"
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from eventsource.cli.common import JsonOpt, emit_json, exit_codes
from eventsource.codec.compatibility import CompatibilityMode
from eventsource.codec.files import check_schema_files, write_schema_files
from eventsource.codec.upcasting import DEFAULT_UPCASTERS, Upcasters
from eventsource.domain import Event
from eventsource.errors import ConfigurationError

app = typer.Typer(
    help="Generate the event schemas (.avsc) and check compatibility.", no_args_is_help=True
)

ModulesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Modules whose Event subclasses are the event models, e.g. examples.bank.domain",
        show_default="event-modules of [tool.eventsource] in pyproject.toml",
    ),
]
DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        "-s",
        help="Directory of the released .avsc files.",
        show_default="schema-dir of [tool.eventsource] in pyproject.toml, or schemas",
    ),
]


def project_config(start: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """``[tool.eventsource]`` of the nearest ``pyproject.toml`` (cwd, then its parents)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
            table = data.get("tool", {}).get("eventsource", {})
            if not isinstance(table, dict):
                raise ConfigurationError(f"[tool.eventsource] in {path} is not a table")
            return table, path
    return {}, None


def resolve(modules: list[str] | None, directory: Path | None) -> tuple[list[str], Path]:
    """Modules and schema directory: the arguments, else ``[tool.eventsource]``."""
    config, path = project_config()
    if not modules:
        configured = config.get("event-modules")
        if not configured:
            where = (
                f"add event-modules to [tool.eventsource] in {path}"
                if path
                else ("or add [tool.eventsource] event-modules = [...] to pyproject.toml")
            )
            raise ConfigurationError(
                f"name the modules that define the event models (e.g. examples.bank.domain), "
                f"{where}"
            )
        if not isinstance(configured, list) or not all(isinstance(m, str) for m in configured):
            raise ConfigurationError(
                f"event-modules in [tool.eventsource] of {path} must be a list of module names"
            )
        modules = list(configured)
    if directory is None:
        configured_dir = config.get("schema-dir", "schemas")
        base = path.parent if path is not None else Path.cwd()
        directory = Path(configured_dir)
        if not directory.is_absolute() and path is not None and base != Path.cwd():
            directory = base / directory
    return modules, directory


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


@app.command(
    epilog="Examples:\n\n"
    "  eventsource schemas generate examples.bank.domain --dir schemas\n\n"
    "  eventsource schemas generate    # modules and directory from pyproject.toml"
)
def generate(modules: ModulesArg = None, directory: DirOpt = None) -> None:
    """Write a new .avsc version for every new or changed event model.

    Released files are never rewritten: a changed model gets the next version.
    """
    with exit_codes():
        names, directory = resolve(modules, directory)
        models, _ = discover(names)
        written = write_schema_files(models, directory)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(written)} new schema file(s), {len(models)} event type(s) in {directory}")


@app.command(
    epilog="Examples:\n\n"
    "  eventsource schemas check    # modules and directory from pyproject.toml\n\n"
    "  eventsource schemas check examples.bank.domain --dir schemas\n\n"
    "  eventsource schemas check app.events --mode FULL_TRANSITIVE --json"
)
def check(
    modules: ModulesArg = None,
    directory: DirOpt = None,
    mode: Annotated[
        CompatibilityMode,
        typer.Option(
            "--mode",
            "-m",
            case_sensitive=False,
            help="Compatibility the models must keep with their released versions.",
        ),
    ] = CompatibilityMode.BACKWARD,
    json_out: JsonOpt = False,
) -> None:
    """Fail (exit 1) when a model drifted from its latest file or breaks compatibility.

    Prints one line per problem, naming the event type and the field.
    """
    with exit_codes():
        names, directory = resolve(modules, directory)
        models, upcasters = discover(names)
        if not directory.is_dir():
            raise ConfigurationError(
                f"schema directory {directory} does not exist: run `eventsource schemas "
                "generate` first or pass --dir"
            )
        problems = check_schema_files(models, directory, mode, upcasters)
    if json_out:
        emit_json(
            {
                "ok": not problems,
                "modules": names,
                "directory": str(directory),
                "mode": mode.value,
                "event_types": len(models),
                "problems": problems,
            }
        )
        if problems:
            raise typer.Exit(1)
        return
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{len(models)} event type(s) match {directory} and are {mode.value} compatible")
