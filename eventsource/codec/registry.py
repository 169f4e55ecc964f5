"""Schema registry mode: the Confluent wire format with a Confluent-compatible registry.

Registry-less single-object encoding stays the default. With a registry configured:

- the **writer** registers each event type's current schema once (on its first encode) and
  writes ``00`` + the 4-byte big-endian schema id + the Avro body;
- **readers** resolve ids through the registry (cached) and still decode single-object
  payloads from the schema catalog, so both framings can share a topic.

Subjects follow Confluent's ``RecordNameStrategy``: the subject is the event's full name
(``bank.account.MoneyDeposited``), because one events topic carries many event types and
the registry then checks each type's versions against each other. Pass
``subject_name=`` (e.g. ``lambda name: f"{topic}-{name}"`` for TopicRecordNameStrategy)
to choose another. The registry's own compatibility setting applies on registration; a
refusal raises :class:`IncompatibleSchemaError`.

Uses confluent-kafka's ``schema_registry`` client (``pip install
'confluent-kafka[schemaregistry]'``); a ``mock://`` URL gives its in-memory mock client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from eventsource.codec.catalog import SchemaCatalog
from eventsource.codec.event_codec import CONFLUENT_MAGIC, EventCodec
from eventsource.codec.upcasting import Upcasters
from eventsource.domain import Event
from eventsource.errors import (
    ConfigurationError,
    IncompatibleSchemaError,
    SchemaError,
    UnknownSchemaError,
)

__all__ = [
    "RegistryEventCodec",
    "RegistrySchemaCatalog",
    "record_subject",
    "registry_client",
    "registry_codec",
]

SubjectName = Callable[[str], str]
_SINGLE_OBJECT_HEADER = 10
_NOT_FOUND = 404
_CONFLICT = 409


def record_subject(full_name: str) -> str:
    """Confluent's RecordNameStrategy: the subject is the record's full name."""
    return full_name


def registry_client(url: str, **config: Any) -> Any:
    """A confluent-kafka ``SchemaRegistryClient`` for ``url`` (``mock://<scope>``: the mock).

    ``config`` passes the client's other settings (``basic.auth.user.info``, TLS, ...).
    """
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:  # the extra's dependencies (httpx, authlib, ...) are missing
        raise ConfigurationError(
            f"schema registry mode needs confluent-kafka's schema registry client, which "
            f"cannot be imported ({exc}): pip install 'confluent-kafka[schemaregistry]'"
        ) from exc
    try:
        return SchemaRegistryClient.new_client({"url": url, **config})
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid schema registry client settings: {exc}") from exc


class RegistrySchemaCatalog(SchemaCatalog):
    """A catalog that finds Confluent schema ids' writer schemas in a schema registry."""

    def __init__(self, client: Any, upcasters: Upcasters | None = None) -> None:
        super().__init__(upcasters)
        self.client = client
        self._by_id: dict[int, dict[str, Any]] = {}

    def remember(self, schema_id: int, schema: dict[str, Any]) -> None:
        """Know the schema behind ``schema_id`` without asking the registry."""
        self._by_id[schema_id] = schema

    def writer_for_registry_id(self, schema_id: int) -> dict[str, Any]:
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == _NOT_FOUND:
                raise UnknownSchemaError(
                    f"schema id {schema_id} is not in the schema registry: the payload was "
                    "written against another registry, or the schema was deleted"
                ) from exc
            raise SchemaError(
                f"schema registry refused to return schema id {schema_id}: {exc}; retry "
                "when the registry is reachable",
                retriable=True,
            ) from exc
        except Exception as exc:  # httpx connection errors and the like: transient
            raise SchemaError(
                f"schema registry unreachable while looking up schema id {schema_id}: "
                f"{type(exc).__name__}: {exc}; retry when it answers",
                retriable=True,
            ) from exc
        schema_type = registered.schema_type or "AVRO"
        try:
            schema = json.loads(registered.schema_str) if schema_type == "AVRO" else None
        except ValueError:
            schema = None
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise UnknownSchemaError(
                f"schema id {schema_id} in the registry is a {schema_type} schema that is not "
                "an Avro record: it does not describe an event"
            )
        self.add_writer_schema(schema)
        self._by_id[schema_id] = schema
        return schema


class RegistryEventCodec(EventCodec):
    """Encodes with the Confluent wire format; decodes both framings."""

    catalog: RegistrySchemaCatalog

    def __init__(
        self, catalog: RegistrySchemaCatalog, subject_name: SubjectName = record_subject
    ) -> None:
        super().__init__(catalog)
        self.subject_name = subject_name
        self._prefixes: dict[type[Event], bytes] = {}

    def encode(self, event: Event) -> bytes:
        """``00`` + the schema id of the event's current schema + the Avro body."""
        payload = super().encode(event)
        prefix = self._prefixes.get(type(event))
        if prefix is None:
            prefix = self._register(type(event))
        return prefix + payload[_SINGLE_OBJECT_HEADER:]

    def schema_id(self, event_type: type[Event]) -> int:
        """The registry id of ``event_type``'s current schema (registering it if needed)."""
        prefix = self._prefixes.get(event_type) or self._register(event_type)
        return int.from_bytes(prefix[1:], "big")

    def _register(self, event_type: type[Event]) -> bytes:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        schema = self.catalog.schema(event_type)
        subject = self.subject_name(event_type.event_type())
        try:
            schema_id = int(
                self.catalog.client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
            )
        except SchemaRegistryError as exc:
            if exc.http_status_code == _CONFLICT:
                raise IncompatibleSchemaError(
                    f"the schema registry refused {event_type.event_type()}'s schema under "
                    f"subject {subject!r} as incompatible with the versions registered "
                    f"there: {exc}; run `eventsource schemas check` and fix the model"
                ) from exc
            raise SchemaError(
                f"cannot register {event_type.event_type()} under subject {subject!r}: {exc}",
                retriable=exc.http_status_code is None or exc.http_status_code >= 500,
            ) from exc
        except Exception as exc:  # connection errors: nothing was written yet
            raise SchemaError(
                f"schema registry unreachable while registering {event_type.event_type()}: "
                f"{type(exc).__name__}: {exc}",
                retriable=True,
            ) from exc
        if not 0 <= schema_id < 2**32:
            raise SchemaError(f"schema registry returned id {schema_id}, not a 4-byte id")
        self.catalog.remember(schema_id, schema)
        prefix = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        self._prefixes[event_type] = prefix
        return prefix


def registry_codec(
    event_types: Iterable[type[Event]],
    client: Any,
    schema_dir: Path | None = None,
    upcasters: Upcasters | None = None,
    subject_name: SubjectName = record_subject,
) -> RegistryEventCodec:
    """A codec writing Confluent framing through ``client``, reading both framings."""
    catalog = RegistrySchemaCatalog(client, upcasters)
    for event_type in event_types:
        catalog.register(event_type)
    if schema_dir is not None:
        catalog.load_directory(schema_dir)
    return RegistryEventCodec(catalog, subject_name)
