"""Dead-letter policies, headers, retries and parking, without a broker.

The parking lot runs on a real in-memory SQLite database; the DLQ sink is a list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine

from eventsource.domain import EventMetadata
from eventsource.errors import BadMagicError, DeadLetterError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.deadletter import (
    DeadLetterHandler,
    DeadLetterPolicy,
    PoisonRecord,
    SqlParkingLot,
    Stage,
    build_dlq_headers,
    dead_letter_hook,
    dlq_topic,
    header_value,
    redact_message,
)
from eventsource.projection.definition import Projection
from eventsource.projection.tables import create_framework_tables
from eventsource.projection.types import Failure, FailureAction, RawRecord, StopOnFailure
from examples.bank.domain import Account

Headers = list[tuple[str, bytes | None]]
TOPIC = "bank.account.events"


class Balances(Projection):
    name = "balances"
    version = 3
    aggregates = (Account,)


class SkippingBalances(Balances):
    policy = DeadLetterPolicy.SKIP


@dataclass
class ListSink:
    """A DLQ sink that keeps what it was sent; ``fail`` makes flush report a lost record."""

    sent: list[tuple[bytes | None, bytes | None, Headers]] = field(default_factory=list)
    fail: bool = False
    closed: bool = False

    def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self.sent.append((key, value, headers))

    def flush(self) -> None:
        if self.fail:
            raise DeadLetterError("broker did not acknowledge", retriable=True)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = create_engine("sqlite://")
    create_framework_tables(eng)
    yield eng
    eng.dispose()


def raw(offset: int, key: bytes | None = b"acc-1") -> RawRecord:
    return RawRecord(
        topic=TOPIC,
        partition=2,
        offset=offset,
        key=key,
        value=b"\xc3\x01payload",
        headers=(("ce_type", b"bank.account.MoneyDeposited"), ("ce_id", b"e-1")),
        timestamp_ms=1_700_000_000_000,
    )


def failure(offset: int, key: bytes | None = b"acc-1") -> Failure:
    return Failure(
        projection=Balances(),
        stage="handler",
        record=raw(offset, key),
        error=ValueError(f"boom at {offset}"),
        attempts=4,
    )


def poison(offset: int) -> PoisonRecord:
    return PoisonRecord(raw(offset), Stage.HANDLER, ValueError(f"boom at {offset}"))


META = EventMetadata(
    event_id="e-1",
    event_type="bank.account.MoneyDeposited",
    aggregate_type="bank.account",
    aggregate_id="acc-1",
    version=2,
    time=datetime(2026, 1, 1, tzinfo=UTC),
)


def handler(policy: DeadLetterPolicy, sink: ListSink) -> DeadLetterHandler:
    return DeadLetterHandler(
        projection="balances",
        version=3,
        policy=policy,
        sink_factory=lambda: sink,
        parking=SqlParkingLot("balances", 3),
    )


def test_dlq_topic_is_named_after_the_projection() -> None:
    assert dlq_topic("balances") == "balances.dlq"


def test_dlq_headers_keep_the_original_headers_and_add_the_context() -> None:
    record = poison(41)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = build_dlq_headers(record, projection_version=3, now=now)
    assert headers[:2] == list(record.record.headers)
    assert dict(headers[2:]) == {
        "dlq_source_topic": b"bank.account.events",
        "dlq_source_partition": b"2",
        "dlq_source_offset": b"41",
        "dlq_stage": b"handler",
        "dlq_exception_class": b"builtins.ValueError",
        "dlq_exception_message": b"boom at 41",
        "dlq_projection_version": b"3",
        "dlq_time": b"2026-01-02T03:04:05+00:00",
        "dlq_marked": b"1",
    }


def test_a_dead_letter_dead_lettered_again_carries_one_fresh_set_of_context_headers() -> None:
    first = build_dlq_headers(poison(1), projection_version=1)
    again = RawRecord(TOPIC, 0, 9, b"k", b"v", tuple(first), None)
    headers = build_dlq_headers(
        PoisonRecord(again, Stage.DECODE, BadMagicError("x")), projection_version=2
    )
    assert [k for k, _ in headers].count("dlq_source_offset") == 1
    assert header_value(headers, "dlq_source_offset") == "9"
    assert header_value(headers, "dlq_stage") == "decode"


@pytest.mark.parametrize(
    "secret_text",
    [
        "sasl.password=hunter2",
        "sasl.password: hunter2",
        "postgresql://app:hunter2@db:5432/x",
        "api_key='hunter2'",
        'token="hunter2"',
        "ssl.key.password=hunter2, other=1",
    ],
)
def test_exception_messages_are_redacted_of_secrets(secret_text: str) -> None:
    cleaned = redact_message(f"connect failed ({secret_text}) retry later")
    assert "hunter2" not in cleaned
    assert "***" in cleaned
    assert cleaned.endswith("retry later")


def test_long_exception_messages_are_truncated() -> None:
    cleaned = redact_message("x" * 5000, limit=200)
    assert len(cleaned) == 200
    assert cleaned.endswith("[truncated]")


def test_policy_stop_uses_the_runners_stop_hook() -> None:
    assert isinstance(dead_letter_hook(Balances(), KafkaSettings()), StopOnFailure)


def test_policy_skip_builds_a_dead_letter_handler_without_touching_kafka_yet() -> None:
    hook = dead_letter_hook(SkippingBalances(), KafkaSettings(bootstrap_servers="nowhere:1"))
    assert isinstance(hook, DeadLetterHandler)
    assert (hook.projection, hook.version, hook.policy) == ("balances", 3, DeadLetterPolicy.SKIP)
    hook.close()


def test_a_handler_with_policy_stop_answers_stop_and_sends_nothing(engine: Engine) -> None:
    sink = ListSink()
    with engine.begin() as conn:
        assert handler(DeadLetterPolicy.STOP, sink).on_failure(failure(17), conn) is (
            FailureAction.STOP
        )
    assert sink.sent == []


def test_skip_sends_the_original_record_and_parks_nothing(engine: Engine) -> None:
    sink = ListSink()
    dl = handler(DeadLetterPolicy.SKIP, sink)
    with engine.begin() as conn:
        assert dl.on_failure(failure(5), conn) is FailureAction.SKIP
        assert not dl.intercept(raw(6), META, conn)
        dl.before_commit(conn)
    [(key, value, headers)] = sink.sent
    assert (key, value) == (b"acc-1", b"\xc3\x01payload")
    assert header_value(headers, "dlq_source_offset") == "5"
    assert header_value(headers, "dlq_exception_message") == "boom at 5"
    with engine.connect() as conn:
        assert SqlParkingLot("balances", 3).load(conn) == set()


def test_park_parks_the_aggregate_and_diverts_its_later_records_in_order(engine: Engine) -> None:
    sink = ListSink()
    dl = handler(DeadLetterPolicy.PARK, sink)
    with engine.begin() as conn:
        assert dl.on_failure(failure(5), conn) is FailureAction.SKIP
        assert dl.intercept(raw(8), META, conn)
        assert not dl.intercept(raw(8, key=b"acc-2"), META, conn)
        dl.before_commit(conn)
    with engine.begin() as conn:  # next batch: the parked set comes from the database
        assert dl.intercept(raw(9), META, conn)
        dl.before_commit(conn)
    offsets = [header_value(h, "dlq_source_offset") for _, _, h in sink.sent]
    stages = [header_value(h, "dlq_stage") for _, _, h in sink.sent]
    assert offsets == ["5", "8", "9"]
    assert stages == ["handler", "parked", "parked"]
    with engine.connect() as conn:
        [row] = SqlParkingLot("balances", 3).parked_rows(conn)
    assert (row["aggregate_id"], row["first_offset"], row["last_offset"]) == ("acc-1", 5, 9)


def test_parks_of_a_rolled_back_batch_are_forgotten(engine: Engine) -> None:
    dl = handler(DeadLetterPolicy.PARK, ListSink())
    with engine.connect() as conn:
        txn = conn.begin()
        dl.on_failure(failure(5), conn)
        txn.rollback()
    dl.after_rollback()
    with engine.begin() as conn:
        assert not dl.intercept(raw(6), META, conn)


def test_dead_letters_of_a_rolled_back_batch_are_never_sent(engine: Engine) -> None:
    sink = ListSink()
    dl = handler(DeadLetterPolicy.SKIP, sink)
    with engine.connect() as conn:
        txn = conn.begin()
        dl.on_failure(failure(5), conn)
        txn.rollback()
    dl.after_rollback()
    with engine.begin() as conn:
        dl.on_failure(failure(5), conn)
        dl.before_commit(conn)
    assert [header_value(h, "dlq_source_offset") for _, _, h in sink.sent] == ["5"]
    assert dl.sent == 1


def test_parked_aggregates_are_loaded_back_after_a_restart(engine: Engine) -> None:
    with engine.begin() as conn:
        handler(DeadLetterPolicy.PARK, ListSink()).on_failure(failure(5), conn)
    with engine.begin() as conn:
        assert handler(DeadLetterPolicy.PARK, ListSink()).intercept(raw(6), META, conn)


def test_a_record_without_key_is_dead_lettered_but_parks_nothing(engine: Engine) -> None:
    sink = ListSink()
    dl = handler(DeadLetterPolicy.PARK, sink)
    with engine.begin() as conn:
        dl.on_failure(failure(5, key=None), conn)
        assert not dl.intercept(raw(6, key=None), META, conn)
        dl.before_commit(conn)
    assert len(sink.sent) == 1


def test_an_unacknowledged_dead_letter_fails_the_commit(engine: Engine) -> None:
    sink = ListSink(fail=True)
    dl = handler(DeadLetterPolicy.SKIP, sink)
    with engine.connect() as conn:
        dl.on_failure(failure(5), conn)
        with pytest.raises(DeadLetterError):
            dl.before_commit(conn)


def test_unpark_only_when_the_replayed_record_is_still_the_latest(engine: Engine) -> None:
    lot = SqlParkingLot("balances", 3)
    dl = handler(DeadLetterPolicy.PARK, ListSink())
    with engine.begin() as conn:
        dl.on_failure(failure(5), conn)
        dl.intercept(raw(8), META, conn)
    with engine.begin() as conn:
        assert not lot.unpark_if_last(conn, TOPIC, "acc-1", 5)
        assert lot.unpark_if_last(conn, TOPIC, "acc-1", 8)
        assert lot.load(conn) == set()


def test_a_record_diverted_after_an_unpark_parks_the_aggregate_again(engine: Engine) -> None:
    lot = SqlParkingLot("balances", 3)
    dl = handler(DeadLetterPolicy.PARK, ListSink())
    with engine.begin() as conn:
        dl.on_failure(failure(5), conn)
        dl.before_commit(conn)
    with engine.begin() as conn:
        assert dl.intercept(raw(6), META, conn)  # parked set read before the unpark below
        assert lot.unpark_if_last(conn, TOPIC, "acc-1", 6)
        assert dl.intercept(raw(7), META, conn)
        [row] = lot.parked_rows(conn)
    assert (row["first_offset"], row["last_offset"]) == (7, 7)


def test_parking_is_per_projection_version(engine: Engine) -> None:
    with engine.begin() as conn:
        handler(DeadLetterPolicy.PARK, ListSink()).on_failure(failure(5), conn)
        assert SqlParkingLot("balances", 4).load(conn) == set()
        assert SqlParkingLot("other", 3).load(conn) == set()


def test_close_closes_the_sink_it_opened(engine: Engine) -> None:
    sink = ListSink()
    dl = handler(DeadLetterPolicy.SKIP, sink)
    with engine.begin() as conn:
        dl.on_failure(failure(1), conn)
        dl.before_commit(conn)
    dl.close()
    assert sink.closed


def test_parking_tables_created_in_a_rolled_back_batch_are_created_again() -> None:
    fresh = create_engine("sqlite://")
    dl = handler(DeadLetterPolicy.PARK, ListSink())
    try:
        with fresh.connect() as conn:
            txn = conn.begin()
            dl.on_failure(failure(5), conn)  # creates the tables inside the batch
            txn.rollback()
        dl.after_rollback()
        with fresh.begin() as conn:
            assert not dl.intercept(raw(6), META, conn)
            dl.on_failure(failure(7), conn)
            assert dl.intercept(raw(8), META, conn)
    finally:
        fresh.dispose()
