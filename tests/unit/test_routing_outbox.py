"""The append server's outbox: one reply record per client per flush, version 1 alone."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, cast

from confluent_kafka import Producer

from eventsource.domain import Position
from eventsource.errors import ConcurrencyError, FencedError
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire
from eventsource.store.routing.backlog import Backlog
from eventsource.store.routing.outbox import ReplyOutbox


class RecordingProducer:
    """The two producer methods the outbox calls, keeping what was produced."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes, **options: Any) -> None:
        self.records.append((topic, key, value, options["headers"]))

    def poll(self, timeout: float) -> int:
        return 0


def request(request_id: str, client: str, version: int = 2) -> wire.Request:
    return wire.Request(
        "append", request_id, "app.append-replies", client, 0, "t", f"acc-{request_id}",
        version=version,
    )  # fmt: skip


def done(result: AppendResult | None = None, error: BaseException | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
    return future


def run(
    items: list[tuple[wire.Request, Future[Any] | BaseException]],
) -> tuple[RecordingProducer, Backlog, list[bool]]:
    producer, backlog, fenced = RecordingProducer(), Backlog(10), []
    outbox = ReplyOutbox(
        cast(Producer, producer), "owner:1:x", backlog, lambda: fenced.append(True)
    )
    tracked = backlog.track_all([(f, 10**13) for _, f in items if not isinstance(f, BaseException)])
    entries = iter(tracked)
    outbox._send(
        [(r, f, None if isinstance(f, BaseException) else next(entries)) for r, f in items]
    )
    return producer, backlog, fenced


def test_each_client_gets_one_record_holding_all_its_replies() -> None:
    ok = AppendResult("acc-a1", 2, (Position("t.events", 1, 7),))
    producer, backlog, fenced = run(
        [
            (request("a1", "client-a"), done(ok)),
            (request("b1", "client-b"), done(error=ConcurrencyError("acc-b1", 1, 2))),
            (request("a2", "client-a"), ConcurrencyError("acc-a2", 0, 1)),  # refused early
        ]
    )
    assert [(topic, key) for topic, key, _, _ in producer.records] == [
        ("app.append-replies", b"client-a"),
        ("app.append-replies", b"client-b"),
    ]
    assert producer.records[0][3] == [(wire.CLIENT_HEADER, b"client-a")]
    server, replies = wire.decode_batch(producer.records[0][2])
    assert server == "owner:1:x"
    assert [r.request_id for r in replies] == ["a1", "a2"]
    assert replies[0] == wire.AppendReply("a1", "owner:1:x", 2, ok.positions)
    assert isinstance(replies[1], wire.ErrorReply) and replies[1].error_type == "ConcurrencyError"
    assert backlog.in_flight == 0 and not fenced


def test_a_version_1_request_gets_its_own_version_1_record() -> None:
    producer, _, _ = run([(request("old", "client-a", version=1), done(AppendResult("x", 1, ())))])
    [(_, key, value, headers)] = producer.records
    assert key == b"old" and headers == [(wire.REQUEST_ID_HEADER, b"old")]
    assert wire.decode_reply(value) == wire.AppendReply("old", "owner:1:x", 1, ())


def test_a_cancelled_request_is_answered_as_dropped_and_a_fenced_store_stops_the_server() -> None:
    cancelled: Future[Any] = Future()
    assert cancelled.cancel()
    producer, _, fenced = run(
        [
            (request("late", "c"), cancelled),
            (request("f", "c"), done(error=FencedError("a newer owner"))),
        ]
    )
    _, replies = wire.decode_batch(producer.records[0][2])
    assert isinstance(replies[0], wire.ErrorReply)
    assert replies[0].error_type == "StoreUnavailableError"
    assert "passed its client's deadline" in replies[0].message
    assert isinstance(replies[1], wire.ErrorReply) and replies[1].error_type == "FencedError"
    assert fenced == [True]


def test_a_large_flush_is_split_into_records_of_at_most_max_batch_replies() -> None:
    from eventsource.store.routing.outbox import MAX_BATCH

    items: list[tuple[wire.Request, Future[Any] | BaseException]] = [
        (request(f"r{n}", "c"), done(AppendResult(f"acc-r{n}", 1, ())))
        for n in range(MAX_BATCH + 1)
    ]
    producer, backlog, _ = run(items)
    sizes = [len(wire.decode_batch(value)[1]) for _, _, value, _ in producer.records]
    assert sizes == [MAX_BATCH, 1]
    assert backlog.in_flight == 0
