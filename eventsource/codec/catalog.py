"""The schema catalog: current event models (reader schemas) and known writer schemas.

Encoding needs, per event type, the parsed current schema and the 10-byte single-object
header; decoding needs, per writer fingerprint (or registry id), the writer schema, the
reader schema of the current model and the model class. Both are computed once and kept
in plain dictionaries so the hot paths are one lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

from eventsource.codec.compatibility import backward_problems, logical_type_changes
from eventsource.codec.prepare import Prepare, encoding_plan
from eventsource.codec.schema import avro_schema
from eventsource.codec.upcasting import DEFAULT_UPCASTERS, Datum, Upcasters, plan_route
from eventsource.domain import Event
from eventsource.errors import (
    IncompatibleSchemaError,
    SchemaError,
    SchemaResolutionError,
    UnknownSchemaError,
)

__all__ = ["SINGLE_OBJECT_MAGIC", "ReaderPlan", "SchemaCatalog", "WriterPlan", "schema_fingerprint"]

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
_FILE_VERSION: Final = re.compile(r"\.v(\d+)\.avsc$")


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the schema's parsing canonical form, little-endian (8 bytes)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def full_name(schema: dict[str, Any]) -> str:
    """Avro full name of a named schema."""
    name: str = schema["name"]
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


@dataclass(frozen=True, slots=True)
class WriterPlan:
    """Everything constant about encoding one event type."""

    event_type: type[Event]
    schema: dict[str, Any]
    parsed: Any  # the schema as parsed by fastavro (the reader schema when decoding)
    physical: Any  # logical types stripped: what the encoder writes prepared data with
    header: bytes
    to_datum: Prepare  # event -> the dict fastavro writes with ``physical``

    @property
    def fingerprint(self) -> bytes:
        return self.header[2:]


@dataclass(frozen=True, slots=True)
class ReaderPlan:
    """Everything constant about decoding payloads written with one writer schema."""

    event_type: type[Event]
    writer: Any
    reader: Any | None  # None when the writer schema is the current one (no resolution)
    writer_name: str
    problem: str | None = None  # why the current model cannot read this writer, if it cannot
    upcast: Callable[[Datum], Datum] | None = None  # upcasters between the read and the model


class SchemaCatalog:
    """Registered event models plus every writer schema the application may meet."""

    def __init__(self, upcasters: Upcasters | None = None) -> None:
        #: Upcasters applied when decoding; the :func:`upcaster` decorator's by default.
        self.upcasters = DEFAULT_UPCASTERS if upcasters is None else upcasters
        # An upcaster registered after the first decode of its version must apply: forget
        # the plans (the codecs' fast paths follow, see EventCodec.decode_at).
        self.upcasters.on_change(self._forget_resolutions)
        self._versions: dict[str, dict[int, dict[str, Any]]] = {}  # from schema files
        self._version_of: dict[bytes, int] = {}
        self._plans: dict[type[Event], WriterPlan] = {}
        self._by_name: dict[str, type[Event]] = {}
        self._writers: dict[bytes, dict[str, Any]] = {}
        self._readers: dict[bytes, ReaderPlan] = {}
        self._registry_readers: dict[int, ReaderPlan] = {}

    # -- building -------------------------------------------------------------------
    def register(self, event_type: type[Event]) -> None:
        """Make ``event_type`` encodable and decodable; its schema is a writer schema too."""
        if event_type in self._plans:
            return
        name = event_type.event_type()
        schema = avro_schema(event_type)
        names = [name, *(_qualify(a, event_type.__namespace__) for a in schema.get("aliases", ()))]
        for known in names:
            other = self._by_name.get(known)
            if other is not None:
                raise SchemaError(
                    f"cannot register {event_type.__module__}.{event_type.__qualname__}: "
                    f"{other.__module__}.{other.__qualname__} is already registered as "
                    f"{known!r}; give one of them another __event_name__ or __namespace__"
                )
        fp = schema_fingerprint(schema)
        self._check_same_fingerprint(schema, fp)
        physical, to_datum = encoding_plan(schema)
        self._plans[event_type] = WriterPlan(
            event_type=event_type,
            schema=schema,
            parsed=parse_schema(schema),
            physical=parse_schema(physical),
            header=SINGLE_OBJECT_MAGIC + fp,
            to_datum=to_datum,
        )
        for known in names:
            self._by_name[known] = event_type
        self._writers[fp] = schema
        self._forget_resolutions()

    def add_writer_schema(self, schema: dict[str, Any], version: int | None = None) -> None:
        """Know a historical writer schema; payloads written with it resolve into the
        registered model of the same full name (or alias), through the upcasters of
        its ``version`` (the N of its ``.v<N>.avsc`` file) if it has one."""
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise SchemaError(f"a writer schema must be an Avro record schema, got {schema!r:.200}")
        try:
            parse_schema(schema)
            fp = schema_fingerprint(schema)
        except (SchemaParseException, KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"invalid writer schema {schema.get('name')!r}: {exc}") from exc
        self._check_same_fingerprint(schema, fp)
        self._writers.setdefault(fp, schema)
        if version is not None:
            self._versions.setdefault(full_name(schema), {})[version] = schema
            # two versions with one fingerprint: the newest wins (load_directory adds them
            # in numeric order); `schemas check` refuses such a pair
            self._version_of[fp] = max(version, self._version_of.get(fp, version))
            self._forget_resolutions()  # routes through upcasters depend on versions
        self._readers.pop(fp, None)

    def load_directory(self, path: Path) -> None:
        """Add every ``*.avsc`` file under ``path`` (recursively) as a writer schema."""
        if not path.is_dir():
            raise SchemaError(f"schema directory {path} does not exist or is not a directory")
        for file in sorted(path.rglob("*.avsc"), key=_numeric_order):
            try:
                schema = json.loads(file.read_text(encoding="utf-8"))
                match = _FILE_VERSION.search(file.name)
                self.add_writer_schema(schema, int(match.group(1)) if match else None)
            except (OSError, ValueError, SchemaError) as exc:
                raise SchemaError(f"cannot load schema file {file}: {exc}") from exc

    # -- lookups --------------------------------------------------------------------
    @property
    def event_types(self) -> tuple[type[Event], ...]:
        """Registered event types, in registration order."""
        return tuple(self._plans)

    def fingerprint(self, event_type: type[Event]) -> bytes:
        """The 8-byte CRC-64-AVRO fingerprint of the current schema (little-endian)."""
        return self.writer_plan(event_type).fingerprint

    def schema(self, event_type: type[Event]) -> dict[str, Any]:
        """The current Avro schema of a registered event type."""
        return self.writer_plan(event_type).schema

    def event_type_named(self, full_name: str) -> type[Event]:
        """The registered event type with this Avro full name or alias."""
        try:
            return self._by_name[full_name]
        except KeyError:
            raise UnknownSchemaError(
                f"no event type named {full_name!r} is registered (known: "
                f"{', '.join(sorted(self._by_name)) or 'none'}): register it with the codec"
            ) from None

    def writer_plan(self, event_type: type[Event]) -> WriterPlan:
        plan = self._plans.get(event_type)
        if plan is None:
            raise SchemaError(
                f"event type {event_type.__qualname__} ({event_type.event_type()}) is not "
                "registered: pass it to EventCodec.for_events or SchemaCatalog.register"
            )
        return plan

    def reader_for_fingerprint(self, fp: bytes) -> ReaderPlan:
        """How to decode a single-object payload whose writer has fingerprint ``fp``."""
        plan = self._readers.get(fp)
        if plan is not None:
            return plan if plan.problem is None else _usable(plan)
        writer = self._writers.get(fp)
        if writer is None:
            raise UnknownSchemaError(
                f"no schema with fingerprint {fp.hex()} (CRC-64-AVRO, as on the wire) is "
                "known: add the writer's .avsc file to the schema directory "
                "(eventsource schemas generate) or register its event type"
            )
        plan = self._resolve(writer, f"fingerprint {fp.hex()}")
        self._readers[fp] = plan
        return _usable(plan)

    def writer_for_registry_id(self, schema_id: int) -> dict[str, Any]:
        """The writer schema behind a Confluent schema registry id.

        Hook for a registry-backed catalog; this catalog has no registry configured.
        """
        raise UnknownSchemaError(
            f"payload uses the Confluent wire format with schema id {schema_id}, but no "
            "schema registry is configured: produce with single-object encoding or "
            "configure a registry-backed catalog"
        )

    def reader_for_registry_id(self, schema_id: int) -> ReaderPlan:
        """How to decode a Confluent-framed payload with registry id ``schema_id``."""
        plan = self._registry_readers.get(schema_id)
        if plan is None:
            writer = self.writer_for_registry_id(schema_id)
            plan = self._resolve(writer, f"registry id {schema_id}")
            self._registry_readers[schema_id] = plan
        return plan if plan.problem is None else _usable(plan)

    # -- internals ------------------------------------------------------------------
    def version_of(self, schema: dict[str, Any]) -> int | None:
        """The released version of a writer schema (from its file name), if known."""
        return self._version_of.get(schema_fingerprint(schema))

    def _resolve(self, writer: dict[str, Any], label: str) -> ReaderPlan:
        name = full_name(writer)
        event_type = self._by_name.get(name)
        version = self.version_of(writer)
        is_current = event_type is not None and (
            schema_fingerprint(writer) == self._plans[event_type].fingerprint
        )
        if (
            not is_current  # today's payloads never go through upcasters
            and version is not None
            and self.upcasters.next_step(name, version) is not None
        ):
            return self._upcast_plan(writer, name, version, label)
        if event_type is None:
            raise UnknownSchemaError(
                f"writer schema {name!r} ({label}) is known but no registered event type is "
                f"named {name!r} or has it as an alias: register the event type, list the "
                "old name in the new model's __aliases__, or register an upcaster from it"
            )
        current = self._plans[event_type]
        if schema_fingerprint(writer) == current.fingerprint:
            return ReaderPlan(event_type, current.parsed, None, name)
        problems = backward_problems(reader=current.schema, writer=writer)
        problem = None
        if problems:
            problem = (
                f"{event_type.event_type()} cannot read payloads written with schema {name!r} "
                f"({label}): {'; '.join(problems)}; give the new fields defaults, or "
                "release the change as a new event type"
            )
        return ReaderPlan(event_type, parse_schema(writer), current.parsed, name, problem)

    def _upcast_plan(
        self, writer: dict[str, Any], name: str, version: int, label: str
    ) -> ReaderPlan:
        route = plan_route(
            self.upcasters,
            name,
            version,
            writer,
            schema_of=self._schema_of,
            current_of=self._current_of,
        )
        event_type = self._by_name.get(route.final_type)
        problem = None
        if route.problems or event_type is None:
            problem = (
                f"payloads of {name} v{version} ({label}) cannot be upcast: "
                f"{'; '.join(route.problems)}"
            )
        return ReaderPlan(
            event_type or Event,
            parse_schema(writer),
            parse_schema(route.first_reader),
            name,
            problem,
            route.run,
        )

    def _schema_of(self, name: str, version: int) -> dict[str, Any] | None:
        current = self._current_of(name)
        if current is not None and current[0] == version:
            return current[1]
        return self._versions.get(name, {}).get(version)

    def _current_of(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """A registered model's version (its file's, else the next one) and schema."""
        event_type = self._by_name.get(name)
        if event_type is None:
            return None
        plan = self._plans[event_type]
        version = self._version_of.get(plan.fingerprint)
        if version is None:
            released = self._versions.get(event_type.event_type(), {})
            version = max(released, default=0) + 1
        return version, plan.schema

    def _check_same_fingerprint(self, schema: dict[str, Any], fp: bytes) -> None:
        """Refuse two schemas that share a fingerprint but not their logical types.

        The parsing canonical form drops logical types, so a decimal whose scale changed
        keeps its fingerprint: payloads of the two versions cannot be told apart, and
        reading one as the other would silently change every amount.
        """
        known = self._writers.get(fp)
        if known is None:
            return
        changes = logical_type_changes(schema, known)
        if changes:
            raise IncompatibleSchemaError(
                f"schema {full_name(schema)!r} has the fingerprint {fp.hex()} of a known "
                f"version but different logical types ({'; '.join(changes)}): payloads "
                "of the two versions cannot be told apart; release the change as a new "
                "event type or field instead"
            )

    def _forget_resolutions(self) -> None:
        self._readers.clear()
        self._registry_readers.clear()


def _numeric_order(file: Path) -> tuple[str, str, int]:
    """``X.v2.avsc`` before ``X.v10.avsc`` (text order would put v10 first)."""
    match = _FILE_VERSION.search(file.name)
    if match is None:
        return str(file.parent), file.name, 0
    return str(file.parent), file.name[: match.start()], int(match.group(1))


def _usable(plan: ReaderPlan) -> ReaderPlan:
    if plan.problem is not None:
        raise SchemaResolutionError(plan.problem)
    return plan


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"
