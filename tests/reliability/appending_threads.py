"""Threads appending under faults, and the check that what they were told is what is stored.

Shared by the broker-restart and cluster failover tests: :class:`AppendingThreads` append to
their own aggregates until stopped and keep every acknowledgement (with its time, per
partition); :func:`check_exactly_once` reads the topic back and checks that every
acknowledged event is on it exactly once and that versions are contiguous.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal

from confluent_kafka import Consumer, KafkaError, TopicPartition

from eventsource.codec import parse_headers
from eventsource.domain import Event, Position
from eventsource.errors import (
    ConcurrencyError,
    EventSourceError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.port import EventStore
from eventsource.testing.seed import wait_readable
from examples.bank.domain import AccountOpened, MoneyDeposited

ACCOUNT = "bank.account"


class AppendingThreads:
    """Threads appending to their own aggregates, recording what was acknowledged.

    Thread ``n`` cycles over ``aggregates`` ids ``<prefix><n>-<j>``: an ``AccountOpened``
    first, then ``deposits(turn)`` deposits per append, each at the version the previous
    append returned. A ``ConcurrencyError`` or ``UncertainCommitError`` reloads the version
    (a store still recovering answers the next append instead); every error is counted in
    :attr:`outcomes` and kept in :attr:`errors`, and the thread pauses 50 ms.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        partitions: int,
        threads: int,
        aggregates: int,
        timeout: float,
        prefix: str = "a",
        deposits: Callable[[int], int] = lambda turn: 1,
    ) -> None:
        self.store = store
        self.partitions = partitions
        self.timeout = timeout
        self.deposits = deposits
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, tuple[Position, ...]]] = []
        self.ack_times: dict[int, list[float]] = defaultdict(list)
        self.outcomes: Counter[str] = Counter()
        self.errors: list[EventSourceError] = []
        self.threads = [
            threading.Thread(
                target=self._run,
                args=([f"{prefix}{n}-{j}" for j in range(aggregates)],),
                name=f"appender-{n}",
            )
            for n in range(threads)
        ]

    def __enter__(self) -> AppendingThreads:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.timeout * 3)

    def successes(self) -> int:
        with self.lock:
            return self.outcomes["ok"]

    def _run(self, ids: list[str]) -> None:
        versions = dict.fromkeys(ids, 0)
        turn = 0
        while not self.stop.is_set():
            aggregate_id = ids[turn % len(ids)]
            turn += 1
            events: list[Event] = (
                [MoneyDeposited(amount=Decimal(1))] * self.deposits(turn)
                if versions[aggregate_id]
                else [AccountOpened(owner=aggregate_id)]
            )
            try:
                result = self.store.append(
                    ACCOUNT, aggregate_id, events, versions[aggregate_id], timeout=self.timeout
                )
            except EventSourceError as exc:
                with self.lock:
                    self.outcomes[type(exc).__name__] += 1
                    self.errors.append(exc)
                if isinstance(exc, (ConcurrencyError, UncertainCommitError)):
                    # A store still recovering cannot say: the next append tells.
                    with contextlib.suppress(StoreUnavailableError):
                        versions[aggregate_id] = self.store.version(ACCOUNT, aggregate_id)
                time.sleep(0.05)
                continue
            now = time.monotonic()
            versions[aggregate_id] = result.version
            with self.lock:
                self.outcomes["ok"] += 1
                self.acked.append((aggregate_id, result.version, result.positions))
                self.ack_times[result.positions[0].partition].append(now)


def check_exactly_once(
    settings: KafkaSettings, store: KafkaEventStore, appenders: AppendingThreads
) -> dict[str, int]:
    """Every acknowledged event on the topic once, versions contiguous; versions by aggregate."""
    # Commit markers land after an append returns: read once every acked append is readable.
    wait_readable(settings, [p for *_, positions in appenders.acked for p in positions])
    records = committed_records(settings, store.topic_for(ACCOUNT), appenders.partitions)
    where = {(p, o): (aggregate_id, version) for p, o, aggregate_id, version, _ in records}
    assert len({event_id for *_, event_id in records}) == len(records), "an event is duplicated"
    for aggregate_id, version, positions in appenders.acked:
        expected = range(version - len(positions) + 1, version + 1)
        found = [where.get((p.partition, p.offset)) for p in positions]
        assert found == [(aggregate_id, v) for v in expected], (
            f"acked {aggregate_id}@{version} lost"
        )
    versions: dict[str, list[int]] = defaultdict(list)
    for _, _, aggregate_id, version, _ in sorted(records):
        versions[aggregate_id].append(version)
    for aggregate_id, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{aggregate_id} versions {seen}"
    return {a: len(v) for a, v in versions.items()}


def committed_records(
    settings: KafkaSettings, topic: str, partitions: int
) -> list[tuple[int, int, str, int, str]]:
    """(partition, offset, aggregate id, version, event id) of every committed record."""
    consumer = Consumer(settings.consumer_config("verify", **{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records = []
    at_end: set[int] = set()
    try:
        while len(at_end) < partitions:
            message = consumer.poll(15)
            assert message is not None, "the topic did not reach its end within 15s"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                at_end.add(message.partition() or 0)
                continue
            meta = parse_headers(message.headers())  # type: ignore[arg-type]
            records.append(
                (
                    message.partition() or 0,
                    message.offset() or 0,
                    meta.aggregate_id,
                    meta.version,
                    meta.event_id,
                )
            )
    finally:
        consumer.close()
    return records
