"""Schema files: every released version of every event schema, as ``.avsc`` files in git.

A file is named ``<full name>.v<N>.avsc`` (e.g. ``bank.account.MoneyDeposited.v1.avsc``)
and holds pretty, key-sorted JSON with a trailing newline. A released file is never
rewritten: when a model changes, :func:`write_schema_files` adds version ``N+1``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsource.codec.catalog import schema_fingerprint
from eventsource.codec.compatibility import CompatibilityMode, read_problems
from eventsource.codec.schema import avro_schema
from eventsource.codec.upcasting import DEFAULT_UPCASTERS, Upcasters
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
_FILE = re.compile(r"^(.+)\.v(\d+)\.avsc$")


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


def check_schema_files(
    event_types: Iterable[type[Event]],
    directory: Path,
    mode: CompatibilityMode | str = CompatibilityMode.BACKWARD,
    upcasters: Upcasters | None = None,
) -> list[str]:
    """Problems between the models and their released files (empty when all is well).

    Reported, one line each, naming the event type (and the field where there is one):

    - an event type without a file, or whose model differs from its latest file;
    - a model that breaks ``mode`` against its released versions (see
      :class:`CompatibilityMode`). The versions compared are those before the model's own
      (its latest file when the model drifted from it), including files released under
      its ``__aliases__``. BACKWARD-wise, a version that an upcaster reads is compared
      with the version the upcaster expects, not with the model;
    - an event type of the checked namespaces that has released files but no model, no
      alias and no upcaster any more (renamed without an upcaster: its events are lost).

    ``upcasters`` defaults to the ``@upcaster`` registry.
    """
    mode = _mode(mode)
    upcasters = DEFAULT_UPCASTERS if upcasters is None else upcasters
    event_types = list(event_types)
    problems: list[str] = []
    for event_type in event_types:
        problems += _check_one(event_type, directory, mode, upcasters)
    problems += _orphans(event_types, directory, upcasters)
    return problems


def _check_one(
    event_type: type[Event], directory: Path, mode: CompatibilityMode, upcasters: Upcasters
) -> list[str]:
    name = event_type.event_type()
    schema = avro_schema(event_type)
    history = _history(event_type, schema, directory)
    problems = _same_fingerprints(name, history)
    latest = latest_schema_file(event_type, directory)
    if latest is None:
        problems.append(
            f"{name}: no schema file in {directory}; run `eventsource schemas generate`"
        )
    else:
        version, path = latest
        released = _load(path)
        if released != schema:
            problems += [
                f"{name}: {change} since {path.name}; run `eventsource schemas generate` "
                f"to release v{version + 1}"
                for change in _field_changes(released, schema)
            ]
        elif history:
            history.pop()  # the model's own version is not compared with itself
    targets = history if mode.transitive else history[-1:]
    for release in targets:
        problems += _compatibility(name, schema, release, history, mode, upcasters)
    return problems


def _compatibility(
    name: str,
    schema: dict[str, Any],
    release: _Release,
    history: list[_Release],
    mode: CompatibilityMode,
    upcasters: Upcasters,
) -> list[str]:
    problems = []
    label = f"not {mode.value} compatible with {release.path.name}"
    if mode.backward:
        step = upcasters.next_step(release.name, release.version)
        reader: dict[str, Any] | None = schema
        if step is not None:
            reader = next(
                (
                    r.schema
                    for r in history
                    if (r.name, r.version) == (step.event_type, step.from_version)
                ),
                None,
            )
        if step is None or (reader is not None and step.from_version != release.version):
            into = "" if step is None else f" (read into v{step.from_version} for its upcaster)"
            problems += [
                f"{name}: {label}{into}: {problem}"
                for problem in read_problems(reader=reader or schema, writer=release.schema)
            ]
    if mode.forward:
        problems += [
            f"{name}: {label} (readers of that version cannot read this model's data): {problem}"
            for problem in read_problems(reader=release.schema, writer=schema)
        ]
    return problems


@dataclass(frozen=True, slots=True)
class _Release:
    name: str
    version: int
    path: Path
    schema: dict[str, Any]


def _history(event_type: type[Event], schema: dict[str, Any], directory: Path) -> list[_Release]:
    """Released versions of the model: those of its aliases first, then its own."""
    names = [
        *(_qualified(a, event_type.__namespace__) for a in schema.get("aliases", ())),
        event_type.event_type(),
    ]
    return [
        _Release(name, version, path, _load(path))
        for name in names
        for version, path in _files_named(name, directory)
    ]


def _same_fingerprints(name: str, history: list[_Release]) -> list[str]:
    """Two released versions whose canonical forms are equal cannot be told apart on the
    wire (the fingerprint is the canonical form's): which one a payload is, and so which
    upcasters run, would be a guess."""
    first: dict[bytes, _Release] = {}
    problems = []
    for release in history:
        fp = schema_fingerprint(release.schema)
        earlier = first.setdefault(fp, release)
        if earlier is not release:
            problems.append(
                f"{name}: {earlier.path.name} and {release.path.name} have the same "
                f"fingerprint {fp.hex()} (their canonical forms are equal: they differ only "
                "in defaults, docs or aliases), so payloads written with them cannot be told "
                f"apart; delete {release.path.name} if it was never released, else release "
                "the change as a real schema change"
            )
    return problems


def _orphans(event_types: list[type[Event]], directory: Path, upcasters: Upcasters) -> list[str]:
    known: set[str] = set()
    namespaces = set()
    for event_type in event_types:
        schema = avro_schema(event_type)
        known.add(event_type.event_type())
        known.update(_qualified(a, event_type.__namespace__) for a in schema.get("aliases", ()))
        namespaces.add(event_type.__namespace__)
    released: dict[str, int] = {}
    for path in directory.glob("*.v*.avsc"):
        match = _FILE.match(path.name)
        if match and match.group(1).rpartition(".")[0] in namespaces:
            name, version = match.group(1), int(match.group(2))
            released[name] = max(version, released.get(name, 0))
    problems = []
    for name in sorted(set(released) - known):
        reached, why = _follow(name, released[name], known, upcasters)
        if not reached:
            problems.append(
                f"{name}: v1..v{released[name]} are released in {directory} but {why}: events "
                "written with them can no longer be read; if the event type was renamed, list "
                "the old name in the new model's __aliases__ or register an upcaster "
                f'@upcaster("{name}", from_version={released[name]}, to_type="<new name>")'
            )
    return problems


def _follow(name: str, version: int, known: set[str], upcasters: Upcasters) -> tuple[bool, str]:
    seen = set()
    while name not in known:
        step = upcasters.next_step(name, version)
        if step is None:
            return (
                False,
                f"no event model is named {name} or lists it as an alias, and no upcaster "
                f"reads its v{version}",
            )
        if (name, version) in seen:
            return False, f"the upcasters of {name} loop"
        seen.add((name, version))
        name, version = step.to_type, step.target_version() or 1
    return True, ""


def _mode(mode: CompatibilityMode | str) -> CompatibilityMode:
    try:
        return CompatibilityMode(str(mode).upper())
    except ValueError:
        raise SchemaError(
            f"unknown compatibility mode {mode!r}: use one of "
            f"{', '.join(m.value for m in CompatibilityMode)}"
        ) from None


def _qualified(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"


def _files_named(name: str, directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"{name}.v*.avsc"):
        match = _FILE.match(path.name)
        if match and match.group(1) == name:
            found.append((int(match.group(2)), path))
    return sorted(found)


def assert_schema_files_current(
    event_types: Iterable[type[Event]],
    directory: Path,
    mode: CompatibilityMode | str = CompatibilityMode.BACKWARD,
    upcasters: Upcasters | None = None,
) -> None:
    """Raise :class:`SchemaDriftError` listing every problem :func:`check_schema_files` finds."""
    problems = check_schema_files(event_types, directory, mode, upcasters)
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
