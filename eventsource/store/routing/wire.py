"""Wire format of append requests and replies: versioned JSON, documented in
``docs/reference/routing.md``.

A request is one Kafka record whose value is a UTF-8 JSON object with ``"v"`` (the
protocol version its client speaks) and whose ``es-request-id`` header repeats the request
id. Event payloads travel as the codec's bytes (Avro single-object encoding),
base64-encoded, so the owner decodes them with the same schema catalog it uses for the
events topic, and may write them as they are (:meth:`EventCodec.reuse_or_encode`).

Replies to version-2 requests are batched: one record per client per flush of the owner's
replies, its ``es-client`` header naming the client (others skip it unread), its value
``{"v": 2, "server": ..., "replies": [...]}``. Replies to version-1 requests, and to
requests the owner cannot read, are one record each, version 1, with the ``es-request-id``
header: every client reads those.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from eventsource import errors
from eventsource.domain import Position
from eventsource.store.port import AppendResult
from eventsource.store.routing.wire_errors import error_from_reply, error_reply
from eventsource.store.routing.wire_types import (
    CLIENT_HEADER,
    PROTOCOL_VERSION,
    REQUEST_ID_HEADER,
    SUPPORTED_VERSIONS,
    AppendReply,
    EncodedEvent,
    ErrorReply,
    Reply,
    Request,
    RequestKind,
)

__all__ = [
    "CLIENT_HEADER",
    "PROTOCOL_VERSION",
    "REQUEST_ID_HEADER",
    "SUPPORTED_VERSIONS",
    "AppendReply",
    "EncodedEvent",
    "ErrorReply",
    "Reply",
    "Request",
    "RequestKind",
    "decode_batch",
    "decode_reply",
    "decode_request",
    "encode_batch",
    "encode_reply",
    "encode_request",
    "error_entry",
    "error_from_reply",
    "error_reply",
    "header_of",
    "request_id_of",
    "result_entry",
]

_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))
"""One compact encoder for every record (``json.dumps`` with options builds one per call)."""
_UPGRADE: Final = (
    "run the same eventsource version on clients and owner (an owner also serves clients "
    "of the previous version: upgrade owners first)"
)


# requests ------------------------------------------------------------------------------
def encode_request(request: Request) -> bytes:
    body: dict[str, Any] = {
        "v": request.version,
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
    """Parse a request of a version this owner serves; ``DecodeError`` says what is wrong.

    The owner parses one per routed append: a well-formed request is read in one pass
    (types compared at once, payloads through ``binascii``); anything else goes through
    the field-by-field checks, which name what is wrong.
    """
    try:
        body = json.loads(value)  # type: ignore[arg-type]  # None: the checks say so
        request = _well_formed(body)
    except Exception:  # _checked_request raises the exact DecodeError
        request = None
    return _checked_request(value) if request is None else request


def _well_formed(body: Any) -> Request | None:
    """The request in ``body`` if every field has its type, else ``None``."""
    get = body.get
    version, kind, request_id, reply_topic = (
        get("v"),
        get("kind"),
        get("request_id"),
        get("reply_topic"),
    )
    client, expires, aggregate_type = get("client"), get("expires_at_ms"), get("aggregate_type")
    aggregate_id, expected, raws = get("aggregate_id"), get("expected_version"), get("events")
    correlation_id, causation_id = get("correlation_id"), get("causation_id")
    if not (
        type(version) is int
        and version in SUPPORTED_VERSIONS
        and (kind == "append" or kind == "version")
        and type(request_id) is str
        and type(reply_topic) is str
        and type(client) is str
        and type(expires) is int
        and type(aggregate_type) is str
        and type(aggregate_id) is str
        and type(expected) is int
        and type(raws) is list
        and (correlation_id is None or type(correlation_id) is str)
        and (causation_id is None or type(causation_id) is str)
    ):
        return None
    events = []
    for raw in raws:
        event_type, payload = raw["type"], raw["payload"]
        if type(event_type) is not str or type(payload) is not str:
            return None
        events.append(EncodedEvent(event_type, binascii.a2b_base64(payload, strict_mode=True)))
    return Request(
        kind,
        request_id,
        reply_topic,
        client,
        expires,
        aggregate_type,
        aggregate_id,
        expected,
        tuple(events),
        correlation_id,
        causation_id,
        version,
    )


def _checked_request(value: bytes | None) -> Request:
    body = _load(value, "append request", SUPPORTED_VERSIONS)
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
        "append" if kind == "append" else "version",
        _get(body, "request_id", str),
        _get(body, "reply_topic", str),
        _get(body, "client", str),
        _get(body, "expires_at_ms", int),
        _get(body, "aggregate_type", str),
        _get(body, "aggregate_id", str),
        _get(body, "expected_version", int),
        tuple(events),
        _get_optional(body, "correlation_id"),
        _get_optional(body, "causation_id"),
        body["v"],
    )


# version-1 replies: one record per request -------------------------------------------
def encode_reply(reply: Reply) -> bytes:
    body: dict[str, Any] = {"v": 1, "request_id": reply.request_id, "server": reply.server}
    if isinstance(reply, AppendReply):
        body["ok"] = True
        body["version"] = reply.version
        body["positions"] = [[p.topic, p.partition, p.offset] for p in reply.positions]
    else:
        body["ok"] = False
        body["error"] = _error_body(reply)
    return _ENCODER.encode(body).encode("utf-8")


def decode_reply(value: bytes | None) -> Reply:
    """Parse a version-1 reply; ``DecodeError`` says which field is wrong."""
    body = _load(value, "append reply", (1,))
    request_id = _get(body, "request_id", str)
    server = _get(body, "server", str)
    if _get(body, "ok", bool):
        positions = _positions(_get(body, "positions", list))
        return AppendReply(request_id, server, _get(body, "version", int), positions)
    return _error(request_id, server, _get(body, "error", dict))


# version-2 replies: one record per client per flush -----------------------------------
def result_entry(request_id: str, result: AppendResult) -> list[Any]:
    """A success in a batch: ``[request_id, version, [[topic, partition, offset], ...]]``."""
    return [
        request_id,
        result.version,
        [[p.topic, p.partition, p.offset] for p in result.positions],
    ]


def error_entry(reply: ErrorReply) -> list[Any]:
    """A failure in a batch: ``[request_id, {"type", "message", "retriable", ...fields}]``."""
    return [reply.request_id, _error_body(reply)]


def encode_batch(server: str, entries: list[list[Any]]) -> bytes:
    return _ENCODER.encode({"v": 2, "server": server, "replies": entries}).encode("utf-8")


def decode_batch(value: bytes | None) -> tuple[str, list[Reply]]:
    """The owner and the replies of a version-2 reply record; ``DecodeError`` says why not."""
    body = _load(value, "reply batch", (2,))
    server = _get(body, "server", str)
    replies: list[Reply] = []
    for raw in _get(body, "replies", list):
        if not (isinstance(raw, list) and len(raw) in (2, 3) and isinstance(raw[0], str)):
            raise errors.DecodeError(f"reply batch entry {raw!r} is not [request_id, ...]")
        if len(raw) == 2 and isinstance(raw[1], dict):
            replies.append(_error(raw[0], server, raw[1]))
        elif (
            len(raw) == 3
            and isinstance(raw[1], int)
            and not isinstance(raw[1], bool)
            and isinstance(raw[2], list)
        ):
            replies.append(AppendReply(raw[0], server, raw[1], _positions(raw[2])))
        else:
            raise errors.DecodeError(
                f"reply batch entry {raw!r} is neither [request_id, version, positions] "
                "nor [request_id, error]"
            )
    return server, replies


def header_of(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
    name: str,
) -> str | None:
    """A header of a record as text, without parsing its value."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def request_id_of(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> str | None:
    """The request id header of a record, without parsing its value."""
    return header_of(headers, REQUEST_ID_HEADER)


# helpers -------------------------------------------------------------------------------
def _error_body(reply: ErrorReply) -> dict[str, Any]:
    return {
        "type": reply.error_type,
        "message": reply.message,
        "retriable": reply.retriable,
        **reply.fields,
    }


def _error(request_id: str, server: str, error: dict[str, Any]) -> ErrorReply:
    fields = {k: v for k, v in error.items() if k not in ("type", "message", "retriable")}
    return ErrorReply(
        request_id,
        server,
        _get(error, "type", str),
        _get(error, "message", str),
        bool(error.get("retriable", False)),
        fields,
    )


def _positions(raws: list[Any]) -> tuple[Position, ...]:
    positions = []
    for raw in raws:
        if not (
            type(raw) is list
            and len(raw) == 3
            and type(raw[0]) is str
            and type(raw[1]) is int
            and type(raw[2]) is int
        ):
            raise errors.DecodeError(f"append reply position {raw!r} is not [topic, p, o]")
        positions.append(Position(raw[0], raw[1], raw[2]))
    return tuple(positions)


def _load(value: bytes | None, what: str, versions: tuple[int, ...]) -> dict[str, Any]:
    if value is None:
        raise errors.DecodeError(f"{what} has no value")
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.DecodeError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.DecodeError(f"{what} is not a JSON object")
    version = body.get("v")
    if version not in versions or isinstance(version, bool):
        speaks = " and ".join(map(str, versions))
        raise errors.DecodeError(
            f"{what} has protocol version {version!r}, this process speaks {speaks}: {_UPGRADE}"
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
