"""Appends under failover on a three-node cluster: what was acknowledged, when, where.

Shared by the cluster failover tests. ``Appenders`` run threads that append to their own
aggregates and keep the time of every acknowledgement per partition, so a test can measure
how long each partition waited while a node was down (the gap), and check afterwards that
every acknowledged event is on the topic exactly once.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from confluent_kafka.admin import AdminClient

from eventsource.domain import Event, Position
from eventsource.errors import EventSourceError
from eventsource.kafka.client_logs import admin_log_config
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore, WriterOptions
from eventsource.store.port import EventStore
from eventsource.testing.seed import wait_readable
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.reliability.test_writer_broker_restart import committed_records

ACCOUNT = "bank.account"
APPEND_TIMEOUT = 65.0  # the store's default: twice the delivery timeout plus 5 s
TXN_STATE_PARTITIONS = 50  # transaction.state.log.num.partitions (the broker default)


def cluster_settings(cluster: LocalKafkaCluster, application_id: str) -> KafkaSettings:
    """Default settings for a writer on ``cluster`` (the store's own client tuning applies)."""
    return KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, application_id=application_id)


def java_hash(text: str) -> int:
    """Java's ``String.hashCode`` (the broker maps a transactional id with it)."""
    h = 0
    for char in text:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def coordinator_of(cluster: LocalKafkaCluster, transactional_id: str) -> int:
    """Node id of the transaction coordinator of ``transactional_id``."""
    partition = (java_hash(transactional_id) & 0x7FFFFFFF) % TXN_STATE_PARTITIONS
    return cluster.leader_of("__transaction_state", partition)


def fenced_after(cluster: LocalKafkaCluster, node_id: int, killed_at: float) -> float:
    """Seconds from the kill until the controller dropped the node from the metadata."""
    admin = AdminClient(admin_log_config({"bootstrap.servers": cluster.bootstrap_servers}))
    while time.monotonic() - killed_at < 120:
        try:
            if node_id not in admin.list_topics(timeout=2).brokers:
                return time.monotonic() - killed_at
        except Exception:  # a node that does not answer: ask again
            pass
        time.sleep(0.05)
    raise AssertionError(f"node {node_id} was still registered 120 s after its kill")


class Appenders:
    """Threads appending to their own aggregates; acknowledgements timed per partition."""

    def __init__(self, store: EventStore, partitions: int, threads: int = 6) -> None:
        self.store = store
        self.partitions = partitions
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, tuple[Position, ...]]] = []
        self.ack_times: dict[int, list[float]] = defaultdict(list)
        self.outcomes: Counter[str] = Counter()
        self.errors: list[EventSourceError] = []
        self.threads = [
            threading.Thread(target=self._run, args=(n,), name=f"appender-{n}")
            for n in range(threads)
        ]

    def __enter__(self) -> Appenders:
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

    def wait_for(self, more: int, timeout: float = 120.0) -> None:
        """Wait until ``more`` further appends succeeded, on every partition."""
        with self.lock:
            base = {p: len(self.ack_times[p]) for p in range(self.partitions)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [len(self.ack_times[p]) - base[p] for p in range(self.partitions)]
            if min(done) >= max(more // self.partitions, 1):
                return
            time.sleep(0.1)
        raise AssertionError(
            f"appends did not resume on every partition within {timeout:.0f} s "
            f"(per partition since: {done}; outcomes {dict(self.outcomes)})"
        )

    def gaps(self, since: float) -> dict[int, float]:
        """Per partition: the longest wait between acknowledgements from ``since`` on."""
        result = {}
        with self.lock:
            for p in range(self.partitions):
                times = self.ack_times[p]
                before = [t for t in times if t <= since]
                after = [t for t in times if t > since]
                points = ([before[-1]] if before else [since]) + after
                result[p] = max((b - a for a, b in itertools.pairwise(points)), default=0)
        return result

    def _run(self, n: int) -> None:
        ids = [f"a{n}-{j}" for j in range(8)]
        versions = dict.fromkeys(ids, 0)
        turn = 0
        while not self.stop.is_set():
            aggregate_id = ids[turn % len(ids)]
            turn += 1
            events: list[Event] = (
                [MoneyDeposited(amount=Decimal(1))]
                if versions[aggregate_id]
                else [AccountOpened(owner=aggregate_id)]
            )
            try:
                result = self.store.append(
                    ACCOUNT, aggregate_id, events, versions[aggregate_id], timeout=APPEND_TIMEOUT
                )
            except EventSourceError as exc:
                with self.lock:
                    self.outcomes[type(exc).__name__] += 1
                    self.errors.append(exc)
                if type(exc).__name__ in ("ConcurrencyError", "UncertainCommitError"):
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
    settings: KafkaSettings, store: KafkaEventStore, appenders: Appenders
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


def new_store(settings: KafkaSettings, partitions: int, prefix: str) -> KafkaEventStore:
    return KafkaEventStore(
        settings,
        [Account],
        partitions=partitions,
        topic_prefix=prefix,
        options=WriterOptions(append_timeout=APPEND_TIMEOUT),
    ).start(timeout=120)


def report(what: str, cluster: LocalKafkaCluster, **figures: Any) -> None:
    """One line for the test output: the cluster's size and version, then the figures."""
    shown = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[{len(cluster.nodes)}-node Apache Kafka {cluster.version}] {what}: {shown}")
