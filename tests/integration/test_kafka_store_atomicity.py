"""Atomic appends, and the truth about commits whose outcome the client did not see."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from confluent_kafka import KafkaError, KafkaException

from eventsource.codec import parse_headers
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.kafka.options import WriterOptions
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.integration.partition_records import read_partition

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
COMMAND = [
    AccountOpened(owner="Ada"),
    MoneyDeposited(amount=Decimal(5)),
    MoneyDeposited(amount=Decimal(6)),
]


@pytest.fixture
def store(kafka_settings: KafkaSettings, unique_name: str) -> Iterator[KafkaEventStore]:
    settings = kafka_settings.model_copy(
        update={"application_id": unique_name, "delivery_timeout_ms": 10_000}
    )
    with KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{unique_name}.") as s:
        yield s


def fail_at(stage: str, error: BaseException) -> Callable[[str], None]:
    def hook(current: str) -> None:
        if current == stage:
            raise error

    return hook


def test_a_failure_between_produce_and_commit_aborts_the_whole_command(
    store: KafkaEventStore, kafka_settings: KafkaSettings
) -> None:
    topic = store.topic_for(ACCOUNT)
    writer = store.writer_for(ACCOUNT, "acc-1")
    writer.fault_hook = fail_at("before_commit", RuntimeError("injected before commit"))
    with pytest.raises(StoreUnavailableError, match="nothing was written"):
        store.append(ACCOUNT, "acc-1", COMMAND, 0)
    # The records did reach the log, inside the transaction that was then aborted ...
    assert len(read_partition(kafka_settings, topic, 0, "read_uncommitted")) == 3
    # ... so a read_committed consumer sees none of them, and the store is unchanged.
    assert read_partition(kafka_settings, topic, 0, "read_committed") == []
    assert store.version(ACCOUNT, "acc-1") == 0

    writer.fault_hook = None
    result = store.append(ACCOUNT, "acc-1", COMMAND, 0)
    committed = read_partition(kafka_settings, topic, 0, "read_committed")
    assert [r.offset() for r in committed] == [p.offset for p in result.positions]
    assert [parse_headers(r.headers()).version for r in committed] == [1, 2, 3]  # type: ignore[arg-type]
    assert [dict(r.headers() or [])["ce_type"] for r in committed] == [
        e.event_type().encode() for e in COMMAND
    ]


def test_a_commit_that_happened_but_was_not_acknowledged_is_reported_as_a_success(
    store: KafkaEventStore, kafka_settings: KafkaSettings
) -> None:
    store.append(ACCOUNT, "acc-0", [AccountOpened(owner="Bob")], 0)
    writer = store.writer_for(ACCOUNT, "acc-1")
    lost_reply = KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True))
    writer.fault_hook = fail_at("after_commit", lost_reply)
    result = store.append(ACCOUNT, "acc-1", COMMAND, 0)
    writer.fault_hook = None
    assert result.version == 3
    committed = read_partition(kafka_settings, store.topic_for(ACCOUNT), 0, "read_committed")
    assert [r.offset() for r in committed[1:]] == [p.offset for p in result.positions]
    # Folded exactly once: the re-read tail is the only source of these events.
    assert store.version(ACCOUNT, "acc-1") == 3
    assert store.load(Account, "acc-1").balance == Decimal(11)
    assert store.append(ACCOUNT, "acc-1", [MoneyDeposited(amount=Decimal(1))], 3).version == 4


def test_a_commit_that_never_reached_the_broker_is_reported_as_nothing_written(
    store: KafkaEventStore, kafka_settings: KafkaSettings
) -> None:
    writer = store.writer_for(ACCOUNT, "acc-1")
    writer.fault_hook = fail_at("commit", KafkaException(KafkaError(KafkaError._TIMED_OUT)))
    with pytest.raises(StoreUnavailableError, match="not on the topic"):
        store.append(ACCOUNT, "acc-1", COMMAND, 0)
    writer.fault_hook = None
    assert read_partition(kafka_settings, store.topic_for(ACCOUNT), 0, "read_committed") == []
    assert store.version(ACCOUNT, "acc-1") == 0
    assert store.append(ACCOUNT, "acc-1", COMMAND, 0).version == 3


def test_a_commit_the_broker_refused_aborts_and_writes_nothing(store: KafkaEventStore) -> None:
    writer = store.writer_for(ACCOUNT, "acc-1")
    refused = KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True)
    writer.fault_hook = fail_at("commit", KafkaException(refused))
    with pytest.raises(StoreUnavailableError, match="nothing was written"):
        store.append(ACCOUNT, "acc-1", COMMAND, 0)
    writer.fault_hook = None
    assert store.version(ACCOUNT, "acc-1") == 0
    assert store.append(ACCOUNT, "acc-1", COMMAND, 0).version == 3


def test_a_rejected_request_does_not_affect_the_requests_queued_with_it(
    store: KafkaEventStore,
) -> None:
    futures = [
        store.append_async(ACCOUNT, "acc-1", [AccountOpened(owner="A")], 0),
        store.append_async(ACCOUNT, "acc-1", [AccountOpened(owner="B")], 0),  # loses
        store.append_async(ACCOUNT, "acc-2", [AccountOpened(owner="C")], 0),
        store.append_async(ACCOUNT, "acc-1", [MoneyDeposited(amount=Decimal(1))], 1),
    ]
    outcomes = [type(f.exception(timeout=30)).__name__ for f in futures]
    assert outcomes == ["NoneType", "ConcurrencyError", "NoneType", "NoneType"]
    assert (store.version(ACCOUNT, "acc-1"), store.version(ACCOUNT, "acc-2")) == (2, 1)


def test_a_request_that_lost_only_to_an_aborted_request_of_its_batch_is_judged_again(
    store: KafkaEventStore,
) -> None:
    # Two appends at the same expected version land in one group commit. The first wins the
    # in-batch check, but its transaction aborts: the second must not be told it lost to a
    # version that never existed; it is checked again against the topic and succeeds.
    writer = store.writer_for(ACCOUNT, "acc-2")
    release = threading.Event()
    calls: list[int] = []

    def hook(stage: str) -> None:
        if stage != "before_commit":
            return
        calls.append(1)
        if len(calls) == 1:
            assert release.wait(30), "the test never released the first transaction"
        elif len(calls) == 2:
            raise RuntimeError("injected: the batch's winner aborts")

    writer.fault_hook = hook
    blocker = store.append_async(ACCOUNT, "acc-2-blocker", [AccountOpened(owner="B")], 0)
    while not calls:  # the first transaction is inside the hook: later appends queue up
        time.sleep(0.01)
    winner = store.append_async(ACCOUNT, "acc-2", [AccountOpened(owner="first")], 0)
    loser = store.append_async(ACCOUNT, "acc-2", [AccountOpened(owner="second")], 0)
    release.set()

    assert blocker.result(30).version == 1
    with pytest.raises(StoreUnavailableError, match="nothing was written"):
        winner.result(30)
    assert loser.result(30).version == 1
    assert store.load(Account, "acc-2").owner == "second"


def collector_seen(seen: list[tuple[str, bool]], fail_after_commit: bool) -> Callable[[str], None]:
    """A fault hook that records whether the collector runs at each stage (and loses the
    first commit's reply if asked)."""

    def hook(stage: str) -> None:
        seen.append((stage, gc.isenabled()))
        if fail_after_commit and stage == "after_commit" and len(seen) <= 3:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True))

    return hook


def test_the_collector_is_paused_during_a_group_commit_and_runs_while_its_recovery_waits(
    store: KafkaEventStore,
) -> None:
    assert gc.isenabled()
    seen: list[tuple[str, bool]] = []
    writer = store.writer_for(ACCOUNT, "acc-1")
    writer.fault_hook = collector_seen(seen, fail_after_commit=True)
    try:
        assert store.append(ACCOUNT, "acc-1", COMMAND, 0).version == 3  # the lost reply
    finally:
        writer.fault_hook = None
    # paused from admission to the commit's end; resumed while the recovery makes a new
    # producer and re-reads the tail (it waits for the broker)
    assert seen[:3] == [("before_commit", False), ("commit", False), ("after_commit", False)]
    assert ("before_init", True) in seen[3:], seen
    assert gc.isenabled()
    assert store.append(ACCOUNT, "acc-1", [MoneyDeposited(amount=Decimal(1))], 3).version == 4
    assert gc.isenabled()


def test_a_store_told_not_to_pause_the_collector_leaves_it_running(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    seen: list[tuple[str, bool]] = []
    with KafkaEventStore(
        settings,
        [Account],
        partitions=1,
        topic_prefix=f"{unique_name}.",
        options=WriterOptions(pause_collector=False),
    ) as store:
        store.writer_for(ACCOUNT, "acc-1").fault_hook = collector_seen(seen, False)
        assert store.append(ACCOUNT, "acc-1", COMMAND, 0).version == 3
    assert seen == [("before_commit", True), ("commit", True), ("after_commit", True)]
