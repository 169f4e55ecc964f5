"""Aggregate snapshots: the codec, and the compacted snapshot topic's record layout.

A snapshot is ``{"sv": <snapshot_version>, "v": <version>, "s": <state>}`` as UTF-8 JSON,
where ``state`` is :meth:`Aggregate.snapshot_state` with a few tagged types (``Decimal``,
``datetime``, ``date``, ``UUID``, ``tuple``, ``set``) so they come back as themselves.
No pickle: a snapshot topic is readable by anything that can read the cluster, and
decoding it must never run code.

The snapshot topic ``<prefix><aggregate_type>.snapshots`` is compacted and has as many
partitions as the events topic; the owner of events partition ``p`` writes the new state
of every aggregate an append touched to snapshot partition ``p`` *in the same transaction
as the events*, keyed by aggregate id. One more record per partition, keyed
:data:`META_KEY`, says the partition's snapshots are complete for a snapshot version:
an owner that rebuilt the partition from its events writes it after writing every
aggregate's snapshot.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

from eventsource.domain import Aggregate
from eventsource.errors import DecodeError, EncodeError
from eventsource.kafka.names import snapshots_topic

__all__ = [
    "META_KEY",
    "SNAPSHOTS_TOPIC_CONFIG",
    "SnapshotMismatch",
    "decode_snapshot",
    "encode_meta",
    "encode_snapshot",
    "meta_version",
    "snapshot_prefix",
    "snapshots_topic",
]

A = TypeVar("A", bound=Aggregate)

META_KEY: Final = b"\x00eventsource.snapshots.complete"
"""Key of the per-partition record saying the snapshots are complete (not an aggregate id:
aggregate ids may not start with NUL)."""

SNAPSHOTS_TOPIC_CONFIG: Final = {"cleanup.policy": "compact", "retention.ms": "-1"}


class SnapshotMismatch(Exception):
    """A snapshot was written for another snapshot version (or cannot be read)."""


def snapshot_prefix(snapshot_version: int) -> bytes:
    """How every snapshot of ``snapshot_version`` starts (a check without parsing)."""
    return b'{"sv":%d,' % snapshot_version


def encode_snapshot(aggregate: Aggregate) -> bytes:
    """The snapshot of ``aggregate`` at its current version."""
    try:
        state = {k: _tag(v, k) for k, v in aggregate.snapshot_state().items()}
    except _Unsupported as exc:
        raise EncodeError(
            f"{type(aggregate).__qualname__} {aggregate.id!r}: attribute {exc.args[0]!r} holds "
            f"a {exc.args[1]}, which a snapshot cannot hold: override snapshot_state() and "
            "restore_state() to map it to JSON types (and bump snapshot_version)"
        ) from None
    body = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    version = type(aggregate).snapshot_version
    return b'{"sv":%d,"v":%d,"s":%s}' % (version, aggregate.version, body.encode("utf-8"))


def decode_snapshot(aggregate_cls: type[A], aggregate_id: str, data: bytes) -> A:
    """The aggregate a snapshot holds; ``SnapshotMismatch`` if written for another layout."""
    if not data.startswith(snapshot_prefix(aggregate_cls.snapshot_version)):
        raise SnapshotMismatch(
            f"snapshot of {aggregate_id!r} is not of {aggregate_cls.__qualname__} snapshot "
            f"version {aggregate_cls.snapshot_version}: {data[:24]!r}"
        )
    try:
        record = json.loads(data)
        version = record["v"]
        state = {k: _untag(v) for k, v in record["s"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(f"snapshot of {aggregate_id!r} is corrupt: {exc}") from exc
    if not isinstance(version, int) or version < 1:
        raise DecodeError(f"snapshot of {aggregate_id!r} has no valid version: {version!r}")
    return aggregate_cls.restore_state(aggregate_id, version, state)


def encode_meta(snapshot_version: int) -> bytes:
    return json.dumps({"complete": True, "sv": snapshot_version}).encode("utf-8")


def meta_version(data: bytes | None) -> int | None:
    """The snapshot version a meta record declares complete (``None`` if unreadable)."""
    try:
        value = json.loads(data or b"")
    except ValueError:
        return None
    version = value.get("sv") if isinstance(value, dict) else None
    return version if isinstance(version, int) else None


class _Unsupported(Exception):
    pass


_TAG: Final = "$es"


def _tag(value: Any, name: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_tag(v, name) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _Unsupported(name, "dict with non-string keys")
        if _TAG in value:
            raise _Unsupported(name, f"dict with the reserved key {_TAG!r}")
        return {k: _tag(v, name) for k, v in value.items()}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_tag(v, name) for v in value]}
    if isinstance(value, set | frozenset):
        items = sorted(value, key=repr)
        return {
            _TAG: "frozenset" if isinstance(value, frozenset) else "set",
            "v": [_tag(v, name) for v in items],
        }
    raise _Unsupported(name, type(value).__name__)


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _untag(v) for k, v in value.items()}
    inner = value["v"]
    if tag == "decimal":
        return Decimal(inner)
    if tag == "datetime":
        return datetime.fromisoformat(inner)
    if tag == "date":
        return date.fromisoformat(inner)
    if tag == "uuid":
        return uuid.UUID(inner)
    if tag == "tuple":
        return tuple(_untag(v) for v in inner)
    if tag == "set":
        return {_untag(v) for v in inner}
    if tag == "frozenset":
        return frozenset(_untag(v) for v in inner)
    raise ValueError(f"unknown snapshot value tag {tag!r}")
