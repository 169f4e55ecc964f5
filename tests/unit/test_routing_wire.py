"""The routing wire format: versioned JSON requests and replies, typed errors both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventsource import errors
from eventsource.domain import Position
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire


def make_request(**changes: Any) -> wire.Request:
    fields: dict[str, Any] = {
        "kind": "append",
        "request_id": "r-1",
        "reply_topic": "app.append-replies",
        "client": "host:1:abc",
        "expires_at_ms": 1_800_000_000_000,
        "aggregate_type": "bank.account",
        "aggregate_id": "acc-1",
        "expected_version": 3,
        "events": (wire.EncodedEvent("bank.account.MoneyDeposited", b"\xc3\x01\x00\xff"),),
        "correlation_id": "corr",
        "causation_id": None,
    }
    fields.update(changes)
    return wire.Request(**fields)


def request_body(**changes: Any) -> bytes:
    body = json.loads(wire.encode_request(make_request()))
    body.update(changes)
    return json.dumps(body).encode()


def test_a_request_round_trips_with_binary_payloads_intact() -> None:
    request = make_request()
    assert wire.decode_request(wire.encode_request(request)) == request


def test_a_request_carries_the_protocol_version() -> None:
    assert json.loads(wire.encode_request(make_request()))["v"] == 2


def test_a_version_1_request_of_an_older_client_is_read_and_remembers_its_version() -> None:
    request = wire.decode_request(request_body(v=1))
    assert request.version == 1
    assert request == make_request(version=1)


def test_a_version_query_round_trips() -> None:
    query = make_request(kind="version", events=(), expected_version=0)
    assert wire.decode_request(wire.encode_request(query)) == query


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "has no value"),
        (b"\xff\xfe", "is not JSON"),
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"v": 3}', "protocol version 3, this process speaks 1 and 2: run the same"),
        (b'{"v": true}', "protocol version True"),
        (b'{"kind": "append"}', "protocol version None"),
    ],
)
def test_unreadable_requests_raise_decode_error_saying_why(
    value: bytes | None, message: str
) -> None:
    with pytest.raises(errors.DecodeError, match=message):
        wire.decode_request(value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "delete"}, "unknown kind 'delete'"),
        ({"expected_version": "3"}, "field 'expected_version' must be a int"),
        ({"expected_version": True}, "field 'expected_version' must be a int"),
        ({"aggregate_id": None}, "field 'aggregate_id' must be a str"),
        ({"events": {}}, "field 'events' must be a list"),
        ({"events": [1]}, "event #0 is not an object"),
        ({"events": [{"type": "x", "payload": "***"}]}, "event #0 payload is not base64"),
        ({"events": [{"type": "x"}]}, "field 'payload' must be a str"),
        ({"correlation_id": 5}, "field 'correlation_id' must be a string or null"),
    ],
)
def test_requests_with_a_bad_field_raise_decode_error_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.DecodeError, match=message):
        wire.decode_request(request_body(**changes))


def test_a_success_reply_round_trips_with_positions() -> None:
    reply = wire.AppendReply(
        "r-1", "owner:7:x", 5, (Position("bank.account.events", 2, 40), Position("t", 0, 1))
    )
    assert wire.decode_reply(wire.encode_reply(reply)) == reply


def test_a_concurrency_error_crosses_the_wire_with_expected_and_actual() -> None:
    reply = wire.error_reply("r-1", "owner", errors.ConcurrencyError("acc-1", 3, 4))
    raised = wire.error_from_reply(_round_trip_error(reply))
    assert isinstance(raised, errors.ConcurrencyError)
    assert (raised.aggregate_id, raised.expected, raised.actual) == ("acc-1", 3, 4)
    assert str(raised) == str(errors.ConcurrencyError("acc-1", 3, 4))


@pytest.mark.parametrize(
    "error",
    [
        errors.FencedError("partition 3 has a newer writer"),
        errors.StoreUnavailableError("catching up on partition 2"),
        errors.NotOwnerError("partition 1 is owned by host-b"),
        errors.UncertainCommitError("commit timed out"),
        errors.AggregateNotFoundError("no such account"),
        errors.UnknownSchemaError("fingerprint 00ff unknown"),
    ],
)
def test_typed_errors_are_raised_again_as_the_same_type_and_message(
    error: errors.EventSourceError,
) -> None:
    raised = wire.error_from_reply(_round_trip_error(wire.error_reply("r", "owner", error)))
    assert type(raised) is type(error)
    assert str(raised) == str(error)
    assert getattr(raised, "retriable", None) == error.retriable


def test_argument_errors_of_the_owner_are_raised_as_value_and_type_errors() -> None:
    value = wire.error_from_reply(wire.error_reply("r", "o", ValueError("needs an event")))
    type_ = wire.error_from_reply(wire.error_reply("r", "o", TypeError("not an Event")))
    assert isinstance(value, ValueError) and str(value) == "needs an event"
    assert isinstance(type_, TypeError) and str(type_) == "not an Event"


def test_an_unexpected_owner_failure_is_reported_as_an_uncertain_commit() -> None:
    reply = wire.error_reply("r-1", "owner:1", RuntimeError("boom"))
    raised = wire.error_from_reply(_round_trip_error(reply))
    assert isinstance(raised, errors.UncertainCommitError)
    assert "owner:1 failed with RuntimeError: boom" in str(raised)
    assert "reload the aggregate before retrying" in str(raised)


def test_an_unknown_error_name_becomes_a_store_error_naming_it() -> None:
    reply = wire.ErrorReply("r", "owner", "os.system", "nope", retriable=True)
    raised = wire.error_from_reply(reply)
    assert type(raised) is errors.StoreError
    assert str(raised) == "the owner owner answered with os.system: nope"
    assert raised.retriable


def test_a_concurrency_error_reply_without_its_fields_degrades_to_a_store_error() -> None:
    raised = wire.error_from_reply(wire.ErrorReply("r", "owner", "ConcurrencyError", "x"))
    assert type(raised) is errors.StoreError


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"v": 1, "request_id": "r", "server": "s", "ok": "yes"}, "field 'ok' must be a bool"),
        (
            {"v": 1, "request_id": "r", "server": "s", "ok": True, "version": 1, "positions": [1]},
            "position 1 is not",
        ),
        ({"v": 1, "request_id": "r", "server": "s", "ok": False}, "field 'error' must be a dict"),
    ],
)
def test_unreadable_replies_raise_decode_error(body: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.DecodeError, match=message):
        wire.decode_reply(json.dumps(body).encode())


def test_the_request_id_header_is_read_from_lists_and_mappings() -> None:
    assert wire.request_id_of([("other", b"x"), (wire.REQUEST_ID_HEADER, b"r-9")]) == "r-9"
    assert wire.request_id_of({wire.REQUEST_ID_HEADER: "r-8"}) == "r-8"
    assert wire.request_id_of(None) is None
    assert wire.request_id_of([(wire.REQUEST_ID_HEADER, None)]) is None


def _round_trip_error(reply: wire.ErrorReply) -> wire.ErrorReply:
    decoded = wire.decode_reply(wire.encode_reply(reply))
    assert isinstance(decoded, wire.ErrorReply)
    assert decoded == reply
    return decoded


def test_a_reply_batch_round_trips_results_and_typed_errors() -> None:
    result = AppendResult("acc-1", 5, (Position("bank.account.events", 2, 40),))
    conflict = wire.error_reply("r-2", "owner:7:x", errors.ConcurrencyError("acc-2", 3, 4))
    value = wire.encode_batch(
        "owner:7:x", [wire.result_entry("r-1", result), wire.error_entry(conflict)]
    )
    assert json.loads(value)["v"] == 2
    server, replies = wire.decode_batch(value)
    assert server == "owner:7:x"
    assert replies == [
        wire.AppendReply("r-1", "owner:7:x", 5, (Position("bank.account.events", 2, 40),)),
        conflict,
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"v": 1, "server": "s", "replies": []}, "reply batch has protocol version 1"),
        ({"v": 2, "server": "s", "replies": {}}, "field 'replies' must be a list"),
        ({"v": 2, "server": "s", "replies": [[1, 2, []]]}, "is not \\[request_id, ...\\]"),
        ({"v": 2, "server": "s", "replies": [["r", True, []]]}, "is neither"),
        ({"v": 2, "server": "s", "replies": [["r", 1, [2]]]}, "position 2 is not"),
        ({"v": 2, "server": "s", "replies": [["r", {"message": "m"}]]}, "field 'type'"),
    ],
)
def test_unreadable_reply_batches_raise_decode_error(body: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.DecodeError, match=message):
        wire.decode_batch(json.dumps(body).encode())
