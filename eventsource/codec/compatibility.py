"""Schema compatibility: can a reader schema read data written with a writer schema?

Structural rules come from the ``avro`` package's ``ReaderWriterCompatibilityChecker``
(a port of Java Avro's checker). Avro resolution ignores logical types, so a decimal whose
scale changed would be read as a different number without any error; that, and other
logical type changes, are reported here too.

The checker merges everything it finds into sets, which loses which message belongs to
which field; so each field of the reader is checked on its own, and every problem names
its field.

Modes (as in Confluent's schema registry), for a new schema and the released versions:

=======================  ===============================================================
``BACKWARD``             the new schema reads data written with the previous version
``BACKWARD_TRANSITIVE``  ... with every released version
``FORWARD``              the previous version reads data written with the new schema
``FORWARD_TRANSITIVE``   every released version reads data written with the new schema
``FULL``                 ``BACKWARD`` and ``FORWARD``
``FULL_TRANSITIVE``      ``BACKWARD_TRANSITIVE`` and ``FORWARD_TRANSITIVE``
``NONE``                 no compatibility check (drift is still reported)
=======================  ===============================================================
"""

from __future__ import annotations

import enum
import json
from typing import Any

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

__all__ = [
    "CompatibilityMode",
    "backward_problems",
    "logical_type_changes",
    "read_problems",
]


class CompatibilityMode(enum.StrEnum):
    """Which readers must be able to read which writers' data."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def backward(self) -> bool:
        """New readers must read old data."""
        return self.name.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Old readers must read new data."""
        return self.name.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        """Against every released version, not just the previous one."""
        return self.name.endswith("_TRANSITIVE")


def read_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty: it can).

    Each problem names the field (``field 'amount': ...``) or the record.
    """
    parsed_writer = avro.schema.parse(json.dumps(writer))
    problems = _structural(reader, parsed_writer, "")
    problems += logical_type_changes(reader, writer)
    return problems


#: Kept for callers that ask the BACKWARD question by its name.
backward_problems = read_problems


def _structural(reader: dict[str, Any], writer: Any, where: str) -> list[str]:
    if not _check(reader, writer):
        return []
    problems = [
        f"record {_full_name(reader)} cannot read {_full_name_of(writer)}: {message}; keep "
        "the name, list the old name in __aliases__, or register an upcaster"
        for message, _ in _check({**reader, "fields": []}, writer)
    ]
    # Fields are checked under the writer's name so a renamed record is reported once.
    same_name = {**reader, "name": _full_name_of(writer), "namespace": None}
    for field in reader.get("fields", []):
        single = {**same_name, "fields": [field]}
        for message, pointers in _check(single, writer):
            paths = sorted({_field_path(single, p) for p in pointers} - {""})
            named = ", ".join(repr(f"{where}{path}") for path in paths) or repr(field["name"])
            problems.append(f"field {named}: {message}")
    return problems or [f"record {_full_name(reader)}: {m}" for m, _ in _check(reader, writer)]


def _check(reader: dict[str, Any], writer: Any) -> list[tuple[str, list[str]]]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(avro.schema.parse(json.dumps(reader)), writer)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    kinds = {k.value for k in result.incompatibilities}
    return [(_explain(kinds, sorted(result.messages)), sorted(result.locations))]


def _field_path(schema: Any, pointer: str) -> str:
    """Dotted field names along a JSON pointer into ``schema`` (``/fields/0/type/...``)."""
    names: list[str] = []
    node = schema
    for part in (p for p in pointer.split("/") if p):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            break
        if isinstance(node, dict) and "name" in node and "type" in node and part.isdigit():
            names.append(node["name"])  # an entry of a "fields" list
    return ".".join(names)


def _explain(kinds: set[str], messages: list[str]) -> str:
    detail = "; ".join(messages)
    if kinds == {SchemaIncompatibilityType.reader_field_missing_default_value.value}:
        return "has no default, so data written without it cannot be read; give it a default"
    if kinds == {SchemaIncompatibilityType.missing_enum_symbols.value}:
        return (
            f"enum symbols {detail} are missing and the enum has no default; keep the "
            "symbols or give the enum a default"
        )
    if kinds == {SchemaIncompatibilityType.type_mismatch.value}:
        return f"type changed incompatibly: {detail}"
    if kinds == {SchemaIncompatibilityType.name_mismatch.value}:
        return f"name changed: {detail}"
    return f"{', '.join(sorted(kinds))}: {detail}"


def _full_name(schema: dict[str, Any]) -> str:
    name: str = schema.get("name", "?")
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _full_name_of(parsed: Any) -> str:
    return str(getattr(parsed, "fullname", parsed))


def logical_type_changes(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Fields whose logical type (or decimal precision/scale) differs between the schemas.

    Such schemas can share a fingerprint: the parsing canonical form drops logical types.
    """
    return _logical_changes(reader, writer, "")


def _logical_changes(reader: Any, writer: Any, where: str) -> list[str]:
    reader, writer = _unwrap_optional(reader), _unwrap_optional(writer)
    if not (isinstance(reader, dict) and isinstance(writer, dict)):
        return []
    kind = reader.get("type")
    if kind != writer.get("type"):
        return []
    if kind == "record":
        written = {f["name"]: f for f in writer.get("fields", [])}
        problems = []
        for field in reader.get("fields", []):
            old = written.get(field["name"])
            if old is not None:
                path = f"{where}/{field['name']}"
                problems += _logical_changes(field["type"], old["type"], path)
        return problems
    if kind == "array":
        return _logical_changes(reader["items"], writer["items"], f"{where}[]")
    if kind == "map":
        return _logical_changes(reader["values"], writer["values"], f"{where}[]")
    keys = ("logicalType", "precision", "scale")
    old = {k: writer.get(k) for k in keys if k in writer}
    new = {k: reader.get(k) for k in keys if k in reader}
    if old != new:
        return [
            f"field {where or '/'} changed its logical type from {old or 'none'} to "
            f"{new or 'none'}; old values would be misread"
        ]
    return []


def _unwrap_optional(avro_type: Any) -> Any:
    if isinstance(avro_type, list) and len(avro_type) == 2 and "null" in avro_type:
        return avro_type[0] if avro_type[1] == "null" else avro_type[1]
    return avro_type
