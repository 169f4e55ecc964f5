"""Schema files: every released version of every event schema, as ``.avsc`` files in git.

A file is named ``<full name>.v<N>.avsc`` (e.g. ``bank.account.MoneyDeposited.v1.avsc``)
and holds pretty, key-sorted JSON with a trailing newline. A released file is never
rewritten: when a model changes, :func:`write_schema_files` adds version ``N+1``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eventsource.codec.compatibility import backward_problems
from eventsource.codec.schema import avro_schema
from eventsource.domain import Event
from eventsource.errors import SchemaDriftError, SchemaError

__all__ = [
    "assert_schema_files_current",
    "check_schema_files",
    "latest_schema_file",
    "render_schema",
    "schema_files",
    "write_schema_files",
]

_VERSION = re.compile(r"\.v(\d+)\.avsc$")


def render_schema(schema: dict[str, Any]) -> str:
    """The canonical text of a schema file: indented, sorted keys, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files(event_type: type[Event], directory: Path) -> list[tuple[int, Path]]:
    """Released ``(version, path)`` pairs of ``event_type`` in ``directory``, oldest first."""
    prefix = f"{event_type.event_type()}.v"
    found = []
    for path in directory.glob(f"{event_type.event_type()}.v*.avsc"):
        match = _VERSION.search(path.name)
        if match and path.name == f"{prefix}{match.group(1)}.avsc":
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_schema_file(event_type: type[Event], directory: Path) -> tuple[int, Path] | None:
    """The newest released ``(version, path)`` of ``event_type``, or None."""
    files = schema_files(event_type, directory)
    return files[-1] if files else None


def write_schema_files(event_types: Iterable[type[Event]], directory: Path) -> list[Path]:
    """Write a new ``.avsc`` version for every event type whose model changed.

    An event type without files gets ``v1``; one whose current schema differs from its
    latest file gets the next version; unchanged ones get nothing. Returns the files
    written. Existing files are never modified.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in event_types:
        schema = avro_schema(event_type)
        latest = latest_schema_file(event_type, directory)
        if latest is not None and _load(latest[1]) == schema:
            continue
        version = 1 if latest is None else latest[0] + 1
        path = directory / f"{event_type.event_type()}.v{version}.avsc"
        path.write_text(render_schema(schema), encoding="utf-8")
        written.append(path)
    return written


def check_schema_files(event_types: Iterable[type[Event]], directory: Path) -> list[str]:
    """Problems between the models and their released files (empty when all is well).

    Reported: an event type without a file, a model that differs from its latest file
    (naming the fields), and a model that cannot read data written with its latest file
    (Avro BACKWARD compatibility). Each problem names the event type.
    """
    problems: list[str] = []
    for event_type in event_types:
        name = event_type.event_type()
        schema = avro_schema(event_type)
        latest = latest_schema_file(event_type, directory)
        if latest is None:
            problems.append(
                f"{name}: no schema file in {directory}; run `eventsource schemas generate`"
            )
            continue
        version, path = latest
        released = _load(path)
        if released == schema:
            continue
        for change in _field_changes(released, schema):
            problems.append(
                f"{name}: {change} since {path.name}; run `eventsource schemas generate` "
                f"to release v{version + 1}"
            )
        for incompatibility in backward_problems(reader=schema, writer=released):
            problems.append(f"{name}: not BACKWARD compatible with {path.name}: {incompatibility}")
    return problems


def assert_schema_files_current(event_types: Iterable[type[Event]], directory: Path) -> None:
    """Raise :class:`SchemaDriftError` listing every problem :func:`check_schema_files` finds."""
    problems = check_schema_files(event_types, directory)
    if problems:
        raise SchemaDriftError(
            f"{len(problems)} schema problem(s):\n" + "\n".join(f"- {p}" for p in problems)
        )


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc}") from exc
    return loaded


def _field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old_fields = {f["name"]: f for f in old.get("fields", [])}
    new_fields = {f["name"]: f for f in new.get("fields", [])}
    changes = [f"field {n!r} added" for n in new_fields if n not in old_fields]
    changes += [f"field {n!r} removed" for n in old_fields if n not in new_fields]
    changes += [
        f"field {n!r} changed from {json.dumps(old_fields[n])} to {json.dumps(new_fields[n])}"
        for n in new_fields
        if n in old_fields and old_fields[n] != new_fields[n]
    ]
    if not changes:
        changes.append("record attributes (name, namespace or aliases) changed")
    return changes
