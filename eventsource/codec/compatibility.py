"""Schema compatibility: can a reader schema read data written with a writer schema?

Structural rules come from the ``avro`` package's ``ReaderWriterCompatibilityChecker``
(a port of Java Avro's checker). Avro resolution ignores logical types, so a decimal whose
scale changed would be read as a different number without any error; that, and other
logical type changes, are reported here too.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

__all__ = ["backward_problems", "logical_type_changes"]


def backward_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty: it can)."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    problems = []
    if result.compatibility is SchemaCompatibilityType.incompatible:
        problems = [
            f"{message} (at {location})"
            for message, location in zip(
                sorted(result.messages), sorted(result.locations), strict=False
            )
        ] or ["incompatible"]
    problems += logical_type_changes(reader, writer)
    return problems


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
