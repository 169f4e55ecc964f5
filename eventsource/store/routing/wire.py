"""Wire format of append requests and replies: versioned JSON, documented in
``docs/reference/routing.md``.

A request or reply is one Kafka record whose value is a UTF-8 JSON object with ``"v": 1``
and whose ``es-request-id`` header repeats the request id, so a client can skip the replies
of other clients without parsing them. Event payloads travel as the codec's bytes
(Avro single-object encoding), base64-encoded, so the owner decodes them with the same
schema catalog it uses for the events topic.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from eventsource import errors
from eventsource.domain import Position

__all__ = [
    "PROTOCOL_VERSION",
    "REQUEST_ID_HEADER",
    "AppendReply",
    "EncodedEvent",
    "ErrorReply",
    "Reply",
    "Request",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "error_from_reply",
    "error_reply",
    "request_id_of",
]

PROTOCOL_VERSION: Final = 1
REQUEST_ID_HEADER: Final = "es-request-id"

_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))
"""One compact encoder for every record (``json.dumps`` with options builds one per call)."""

RequestKind = Literal["append", "version"]


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One event as the codec encoded it, with its type name for logs and checks."""

    event_type: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Request:
    """An append (or version query) sent to the owner of the aggregate's partition."""

    kind: RequestKind
    request_id: str
    reply_topic: str
    client: str
    expires_at_ms: int
    aggregate_type: str
    aggregate_id: str
    expected_version: int = 0
    events: tuple[EncodedEvent, ...] = ()
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class AppendReply:
    """Success: the aggregate's new version (for ``version`` requests: its current one)."""

    request_id: str
    server: str
    version: int
    positions: tuple[Position, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Failure: the typed error the owner raised, by class name, with its fields."""

    request_id: str
    server: str
    error_type: str
    message: str
    retriable: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


Reply = AppendReply | ErrorReply


# requests ------------------------------------------------------------------------------
def encode_request(request: Request) -> bytes:
    body: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": request.kind,
        "request_id": request.request_id,
        "reply_topic": request.reply_topic,
        "client": request.client,
        "expires_at_ms": request.expires_at_ms,
        "aggregate_type": request.aggregate_type,
        "aggregate_id": request.aggregate_id,
        "expected_version": request.expected_version,
        "events": [
            {"type": e.event_type, "payload": base64.b64encode(e.payload).decode("ascii")}
            for e in request.events
        ],
        "correlation_id": request.correlation_id,
        "causation_id": request.causation_id,
    }
    return _ENCODER.encode(body).encode("utf-8")


def decode_request(value: bytes | None) -> Request:
    """Parse a request; ``DecodeError`` says which field is wrong."""
    body = _load(value, "append request")
    kind = _get(body, "kind", str)
    if kind not in ("append", "version"):
        raise errors.DecodeError(f"append request has unknown kind {kind!r}")
    events = []
    for index, raw in enumerate(_get(body, "events", list)):
        if not isinstance(raw, dict):
            raise errors.DecodeError(f"append request event #{index} is not an object")
        try:
            payload = base64.b64decode(_get(raw, "payload", str), validate=True)
        except binascii.Error as exc:
            raise errors.DecodeError(
                f"append request event #{index} payload is not base64: {exc}"
            ) from exc
        events.append(EncodedEvent(_get(raw, "type", str), payload))
    return Request(
        kind="append" if kind == "append" else "version",
        request_id=_get(body, "request_id", str),
        reply_topic=_get(body, "reply_topic", str),
        client=_get(body, "client", str),
        expires_at_ms=_get(body, "expires_at_ms", int),
        aggregate_type=_get(body, "aggregate_type", str),
        aggregate_id=_get(body, "aggregate_id", str),
        expected_version=_get(body, "expected_version", int),
        events=tuple(events),
        correlation_id=_get_optional(body, "correlation_id"),
        causation_id=_get_optional(body, "causation_id"),
    )


# replies -------------------------------------------------------------------------------
def encode_reply(reply: Reply) -> bytes:
    body: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "request_id": reply.request_id,
        "server": reply.server,
    }
    if isinstance(reply, AppendReply):
        body["ok"] = True
        body["version"] = reply.version
        body["positions"] = [[p.topic, p.partition, p.offset] for p in reply.positions]
    else:
        body["ok"] = False
        body["error"] = {
            "type": reply.error_type,
            "message": reply.message,
            "retriable": reply.retriable,
            **reply.fields,
        }
    return _ENCODER.encode(body).encode("utf-8")


def decode_reply(value: bytes | None) -> Reply:
    """Parse a reply; ``DecodeError`` says which field is wrong."""
    body = _load(value, "append reply")
    request_id = _get(body, "request_id", str)
    server = _get(body, "server", str)
    if _get(body, "ok", bool):
        positions = []
        for raw in _get(body, "positions", list):
            if not (
                isinstance(raw, list)
                and len(raw) == 3
                and isinstance(raw[0], str)
                and all(isinstance(n, int) for n in raw[1:])
            ):
                raise errors.DecodeError(f"append reply position {raw!r} is not [topic, p, o]")
            positions.append(Position(raw[0], raw[1], raw[2]))
        return AppendReply(request_id, server, _get(body, "version", int), tuple(positions))
    error = _get(body, "error", dict)
    fields = {k: v for k, v in error.items() if k not in ("type", "message", "retriable")}
    return ErrorReply(
        request_id,
        server,
        _get(error, "type", str),
        _get(error, "message", str),
        bool(error.get("retriable", False)),
        fields,
    )


def error_reply(request_id: str, server: str, error: BaseException) -> ErrorReply:
    """The reply for an error the owner raised while executing a request."""
    if isinstance(error, errors.ConcurrencyError):
        fields: dict[str, Any] = {
            "aggregate_id": error.aggregate_id,
            "expected": error.expected,
            "actual": error.actual,
        }
        return ErrorReply(request_id, server, "ConcurrencyError", str(error), False, fields)
    if isinstance(error, errors.EventSourceError):
        return ErrorReply(request_id, server, type(error).__name__, str(error), error.retriable)
    if isinstance(error, ValueError | TypeError):
        return ErrorReply(request_id, server, type(error).__name__, str(error))
    # Anything else is a bug at the owner, raised at an unknown point of the append.
    return ErrorReply(
        request_id,
        server,
        "UncertainCommitError",
        f"the owner {server} failed with {type(error).__name__}: {error}; the append may "
        "or may not be committed: reload the aggregate before retrying",
    )


def error_from_reply(reply: ErrorReply) -> Exception:
    """The exception a client raises for an error reply: the same typed error."""
    if reply.error_type == "ConcurrencyError":
        f = reply.fields
        if (
            isinstance(f.get("aggregate_id"), str)
            and isinstance(f.get("expected"), int)
            and isinstance(f.get("actual"), int)
        ):
            return errors.ConcurrencyError(f["aggregate_id"], f["expected"], f["actual"])
    if reply.error_type in ("ValueError", "TypeError"):
        return (
            ValueError(reply.message)
            if reply.error_type == "ValueError"
            else TypeError(reply.message)
        )
    cls = getattr(errors, reply.error_type, None)
    if (
        reply.error_type in errors.__all__
        and isinstance(cls, type)
        and issubclass(cls, errors.EventSourceError)
        and cls is not errors.ConcurrencyError
    ):
        if issubclass(cls, errors.DecodeError):
            return cls(reply.message)
        return cls(reply.message, retriable=reply.retriable)
    return errors.StoreError(
        f"the owner {reply.server} answered with {reply.error_type}: {reply.message}",
        retriable=reply.retriable,
    )


def request_id_of(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> str | None:
    """The request id header of a record, without parsing its value."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in pairs:
        if key == REQUEST_ID_HEADER and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


# helpers -------------------------------------------------------------------------------
def _load(value: bytes | None, what: str) -> dict[str, Any]:
    if value is None:
        raise errors.DecodeError(f"{what} has no value")
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.DecodeError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.DecodeError(f"{what} is not a JSON object")
    version = body.get("v")
    if version != PROTOCOL_VERSION:
        raise errors.DecodeError(
            f"{what} has protocol version {version!r}, this process speaks "
            f"{PROTOCOL_VERSION}: run the same eventsource version on clients and owner"
        )
    return body


def _get(body: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    # bool is an int in Python; a version must never be True.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise errors.DecodeError(f"field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def _get_optional(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise errors.DecodeError(f"field {key!r} must be a string or null, got {value!r}")
    return value
