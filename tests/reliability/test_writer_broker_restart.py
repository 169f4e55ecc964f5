"""SIGKILL the broker under a stream of appends: nothing acknowledged is lost or doubled.

Runs its own broker (never the shared one) and kills it with SIGKILL while several threads
append. Every append that returned success must be on the topic exactly once, versions
must stay contiguous per aggregate, failures must come back within the append timeout, and
the writers must recover by themselves once the broker is back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from eventsource.codec import parse_headers
from eventsource.domain import Event, Position
from eventsource.errors import (
    ConcurrencyError,
    FencedError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.launcher import LocalKafka
from eventsource.store.kafka import KafkaEventStore
from eventsource.testing.seed import wait_readable
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
APPEND_TIMEOUT = 20.0


class Clients:
    """Threads appending to their own aggregates, recording what was acknowledged."""

    def __init__(self, store: KafkaEventStore, threads: int, aggregates: int) -> None:
        self.store = store
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, tuple[Position, ...]]] = []
        self.outcomes: Counter[str] = Counter()
        self.threads = [
            threading.Thread(target=self._run, args=([f"c{n}-{j}" for j in range(aggregates)],))
            for n in range(threads)
        ]

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(APPEND_TIMEOUT * 3)

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
                [MoneyDeposited(amount=Decimal(1))] * (1 + turn % 2)
                if versions[aggregate_id]
                else [AccountOpened(owner=aggregate_id)]
            )
            try:
                result = self.store.append(
                    ACCOUNT, aggregate_id, events, versions[aggregate_id], timeout=APPEND_TIMEOUT
                )
                outcome = "ok"
            except (ConcurrencyError, UncertainCommitError) as exc:
                outcome = type(exc).__name__
                try:
                    versions[aggregate_id] = self.store.version(ACCOUNT, aggregate_id)
                except StoreUnavailableError:  # still recovering: the next append tells
                    time.sleep(0.05)
            except (StoreUnavailableError, FencedError) as exc:
                outcome = type(exc).__name__
                time.sleep(0.05)
            with self.lock:
                self.outcomes[outcome] += 1
                if outcome == "ok":
                    self.acked.append((aggregate_id, result.version, result.positions))
            if outcome == "ok":
                versions[aggregate_id] = result.version


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


@pytest.mark.parametrize(
    "kills",
    [pytest.param(1, id="one-kill"), pytest.param(3, id="three-kills", marks=pytest.mark.slow)],
)
def test_acknowledged_appends_survive_broker_sigkills_exactly_once(
    broker: LocalKafka, kills: int
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        application_id="restart-test",
        delivery_timeout_ms=5_000,
        transaction_timeout_ms=15_000,
    )
    partitions = 3
    store = KafkaEventStore(settings, [Account], partitions=partitions).start(timeout=120)
    try:
        with Clients(store, threads=4, aggregates=6) as clients:
            for _ in range(kills):
                time.sleep(3)
                broker.kill()
                time.sleep(1)
                broker.start(timeout=120)
            before = clients.successes()
            deadline = time.monotonic() + 60
            while clients.successes() < before + 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            recovered = clients.successes() - before
        assert recovered >= 50, f"writers did not recover by themselves: {clients.outcomes}"
        hung = [t.name for t in clients.threads if t.is_alive()]
        assert not hung, f"appends did not return while the broker was down: {hung}"
    finally:
        store.close()

    # Commit markers land after an append returns: read once every acked append is readable.
    wait_readable(settings, [p for *_, positions in clients.acked for p in positions])
    records = committed_records(settings, store.topic_for(ACCOUNT), partitions)
    where = {(p, o): (aggregate_id, version) for p, o, aggregate_id, version, _ in records}
    assert len({event_id for *_, event_id in records}) == len(records), "an event is duplicated"
    for aggregate_id, version, positions in clients.acked:
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

    with KafkaEventStore(settings, [Account], partitions=partitions) as again:
        assert {a: again.version(ACCOUNT, a) for a in versions} == {
            a: len(v) for a, v in versions.items()
        }
    print(f"outcomes over {kills} broker kills: {dict(clients.outcomes)}")
