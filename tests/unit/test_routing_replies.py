"""The client's pending-replies table: every waiting call ends once, with the truth."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any, cast

import pytest
from confluent_kafka import Message

from eventsource.domain import Position
from eventsource.errors import (
    ConcurrencyError,
    DecodeError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire
from eventsource.store.routing.replies import PendingReplies


class FakeRecord:
    """The two methods of a consumed Kafka record that the table reads."""

    def __init__(
        self, request_id: str | None, value: bytes | None, header: str = wire.REQUEST_ID_HEADER
    ) -> None:
        self._headers = [] if request_id is None else [(header, request_id.encode())]
        self._value = value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def value(self) -> bytes | None:
        return self._value


def record(request_id: str | None, reply: wire.Reply | None = None, raw: bytes = b"") -> Message:
    value = wire.encode_reply(reply) if reply is not None else raw
    return cast(Message, FakeRecord(request_id, value))


def error_of(future: Future[Any]) -> BaseException | None:
    assert future.done()
    return future.exception()


def test_a_success_reply_completes_its_future_and_names_the_owner() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 10)
    reply = wire.AppendReply("r-1", "owner:1:a", 3, (Position("t", 0, 9),))
    table.on_reply(record("r-1", reply))
    assert future.result(0) == AppendResult("acc-1", 3, (Position("t", 0, 9),))
    assert table.last_owner == "owner:1:a"


def test_a_reply_to_a_future_its_caller_cancelled_is_dropped_and_the_table_goes_on() -> None:
    table = PendingReplies("bank")
    cancelled = table.add("r-1", "append", "acc-1", 10)
    other = table.add("r-2", "append", "acc-2", 10)
    assert cancelled.cancel()
    table.on_reply(record("r-1", wire.AppendReply("r-1", "owner", 1)))
    table.on_reply(record("r-2", wire.AppendReply("r-2", "owner", 4)))
    assert cancelled.cancelled()
    assert other.result(0) == AppendResult("acc-2", 4, ())


def test_an_expired_future_its_caller_cancelled_stays_cancelled() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 0.1)
    assert future.cancel()
    table.expire(time.monotonic() + 1)
    assert future.cancelled()


def test_an_error_reply_raises_the_typed_error() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 10)
    table.on_reply(record("r-1", wire.error_reply("r-1", "owner", ConcurrencyError("acc-1", 0, 1))))
    error = error_of(future)
    assert isinstance(error, ConcurrencyError) and error.actual == 1


def test_replies_to_other_clients_and_records_without_id_are_ignored() -> None:
    table = PendingReplies("bank")
    future = table.add("mine", "append", "acc-1", 10)
    table.on_reply(record("theirs", wire.AppendReply("theirs", "owner", 1)))
    table.on_reply(record(None, raw=b"not even json"))
    assert not future.done()


def test_a_second_reply_for_the_same_request_changes_nothing() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 10)
    table.on_reply(record("r-1", wire.AppendReply("r-1", "owner", 1)))
    table.on_reply(record("r-1", wire.error_reply("r-1", "owner", ConcurrencyError("a", 0, 1))))
    assert future.result(0).version == 1


def test_an_unreadable_reply_makes_the_append_uncertain() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 10)
    table.on_reply(record("r-1", raw=b"{broken"))
    error = error_of(future)
    assert isinstance(error, UncertainCommitError)
    assert "its reply is unreadable" in str(error)


def test_an_append_past_its_deadline_is_uncertain_and_says_to_reload() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 0.5)
    table.expire(time.monotonic())
    assert not future.done()
    table.expire(time.monotonic() + 1)
    error = error_of(future)
    assert isinstance(error, UncertainCommitError)
    assert str(error) == (
        "append request r-1 for aggregate 'acc-1' is uncertain: no reply from the owner within "
        "0.5s. The owner may still have executed it: reload the aggregate (or ask version()) "
        "before retrying; is an AppendServer running for application 'bank'?"
    )


def test_a_version_query_past_its_deadline_is_unavailable_not_uncertain() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "version", "acc-1", 0.5)
    table.expire(time.monotonic() + 1)
    error = error_of(future)
    assert isinstance(error, StoreUnavailableError) and error.retriable


def test_a_reply_after_the_deadline_is_dropped() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 0.1)
    table.expire(time.monotonic() + 1)
    table.on_reply(record("r-1", wire.AppendReply("r-1", "owner", 1)))
    assert isinstance(error_of(future), UncertainCommitError)


def test_an_undelivered_request_is_uncertain_with_the_reason() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 10)
    table.fail("r-1", "the request was not delivered: timed out")
    assert "not delivered: timed out" in str(error_of(future))


def test_a_request_never_sent_is_forgotten_without_completing_its_future() -> None:
    table = PendingReplies("bank")
    future = table.add("r-1", "append", "acc-1", 0.1)
    table.forget("r-1")
    table.expire(time.monotonic() + 1)
    assert not future.done()


@pytest.mark.parametrize("kind", ["append", "version"])
def test_closing_fails_every_waiting_call(kind: wire.RequestKind) -> None:
    table = PendingReplies("bank")
    futures = [table.add(f"r-{n}", kind, "acc-1", 10) for n in range(3)]
    table.fail_all("the client was closed before the reply")
    assert all("closed before the reply" in str(error_of(f)) for f in futures)


def batch(client: str, *entries: list[Any]) -> Message:
    value = wire.encode_batch("owner:2:b", list(entries))
    return cast(Message, FakeRecord(client, value, wire.CLIENT_HEADER))


def test_a_batch_for_this_client_completes_each_of_its_futures() -> None:
    table = PendingReplies("bank", "me:1:a")
    first = table.add("r-1", "append", "acc-1", 10)
    second = table.add("r-2", "append", "acc-2", 10)
    conflict = wire.error_reply("r-2", "owner:2:b", ConcurrencyError("acc-2", 0, 1))
    done = AppendResult("acc-1", 1, (Position("t", 0, 3),))
    table.on_reply(batch("me:1:a", wire.result_entry("r-1", done), wire.error_entry(conflict)))
    assert first.result(0) == done
    assert isinstance(error_of(second), ConcurrencyError)
    assert table.last_owner == "owner:2:b"


def test_a_batch_for_another_client_is_skipped_unread() -> None:
    table = PendingReplies("bank", "me:1:a")
    mine = table.add("r-1", "append", "acc-1", 10)
    table.on_reply(cast(Message, FakeRecord("you:2:b", b"not even json", wire.CLIENT_HEADER)))
    done = AppendResult("acc-1", 1, ())
    table.on_reply(batch("you:2:b", wire.result_entry("r-1", done)))  # same id, not ours
    assert not mine.done()


def test_an_unreadable_batch_leaves_its_requests_to_time_out_as_uncertain() -> None:
    table = PendingReplies("bank", "me:1:a")
    mine = table.add("r-1", "append", "acc-1", 0.01)
    table.on_reply(cast(Message, FakeRecord("me:1:a", b"{broken", wire.CLIENT_HEADER)))
    assert not mine.done()
    table.expire(time.monotonic() + 1)
    assert isinstance(error_of(mine), UncertainCommitError)


def test_an_older_owner_refusing_the_protocol_version_raises_its_decode_error() -> None:
    """A version-1 owner cannot read a version-2 request: it answers with a version-1
    ``DecodeError`` reply (``es-request-id`` header) naming both versions, which this
    client raises as it is."""
    table = PendingReplies("bank", "me:1:a")
    future = table.add("r-1", "append", "acc-1", 10)
    refusal = wire.ErrorReply(
        "r-1",
        "old-owner",
        "DecodeError",
        "append request has protocol version 2, this process speaks 1: run the same "
        "eventsource version on clients and owner",
    )
    table.on_reply(record("r-1", refusal))
    error = error_of(future)
    assert isinstance(error, DecodeError)
    assert "protocol version 2, this process speaks 1" in str(error)
