"""Appends under failover on a three-node cluster: what was acknowledged, when, where.

Shared by the cluster failover tests. ``Appenders`` run threads that append to their own
aggregates and keep the time of every acknowledgement per partition, so a test can measure
how long each partition waited while a node was down (the gap), and check afterwards that
every acknowledged event is on the topic exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient

from eventsource.errors import ConfigurationError
from eventsource.kafka.client_logs import admin_log_config
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore, WriterOptions
from eventsource.store.port import EventStore
from examples.bank.domain import Account
from tests.reliability.appending_threads import ACCOUNT, AppendingThreads, check_exactly_once

__all__ = [  # ACCOUNT and check_exactly_once are shared with the broker-restart test
    "ACCOUNT",
    "Appenders",
    "check_exactly_once",
    "cluster_settings",
    "coordinator_of",
    "elect_preferred_offsets_leaders",
    "fenced_after",
    "group_coordinator_of",
    "kill",
    "new_store",
    "report",
    "report_kill",
]

APPEND_TIMEOUT = 65.0  # the store's default: twice the delivery timeout plus 5 s
TXN_STATE_PARTITIONS = 50  # transaction.state.log.num.partitions (the broker default)
OFFSETS_PARTITIONS = 50  # offsets.topic.num.partitions (the broker default)


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


def group_coordinator_of(cluster: LocalKafkaCluster, group_id: str) -> int:
    """Node id of the group coordinator of ``group_id`` (on a fresh cluster, asking for a
    group makes the brokers create ``__consumer_offsets``: wait for it)."""
    admin = AdminClient(admin_log_config({"bootstrap.servers": cluster.bootstrap_servers}))
    partition = (java_hash(group_id) & 0x7FFFFFFF) % OFFSETS_PARTITIONS
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(Exception):
            admin.describe_consumer_groups([group_id], request_timeout=10)[group_id].result()
        with contextlib.suppress(ConfigurationError):  # the topic is not there yet
            leader = cluster.leader_of("__consumer_offsets", partition)
            if leader >= 0:
                return leader
        if time.monotonic() > deadline:
            raise AssertionError(f"__consumer_offsets[{partition}] has no leader after 60 s")
        time.sleep(0.2)


def elect_preferred_offsets_leaders(cluster: LocalKafkaCluster) -> None:
    """Give every ``__consumer_offsets`` partition back to its preferred leader.

    A node restarted by an earlier test leads none of them until a preferred-leader election
    (the brokers run one every 300 s), so it coordinates no consumer group until then.
    """
    admin = AdminClient(admin_log_config({"bootstrap.servers": cluster.bootstrap_servers}))
    partitions = [TopicPartition("__consumer_offsets", p) for p in range(OFFSETS_PARTITIONS)]
    # Per partition: None, or "election not needed" for those already at their preferred one.
    admin.elect_leaders(ElectionType.PREFERRED, partitions).result()


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


class Appenders(AppendingThreads):
    """Six threads appending to eight aggregates each; acknowledgements timed per partition."""

    def __init__(self, store: EventStore, partitions: int, threads: int = 6) -> None:
        super().__init__(
            store, partitions=partitions, threads=threads, aggregates=8, timeout=APPEND_TIMEOUT
        )

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


def kill(cluster: LocalKafkaCluster, node_id: int) -> tuple[float, float]:
    """``kill -9`` a node: when, and the seconds until the controller fenced it."""
    killed_at = time.monotonic()
    cluster.kill(node_id)
    return killed_at, fenced_after(cluster, node_id, killed_at)


def report_kill(
    what: str,
    cluster: LocalKafkaCluster,
    fenced: float,
    appenders: Appenders,
    gaps: dict[int, float],
    **more: Any,
) -> None:
    """:func:`report` of a killed node: how long fencing took beside each partition's gap."""
    report(
        what,
        cluster,
        controller_fenced_it_after=f"{fenced:.1f}s",
        gap_per_partition={p: f"{g:.1f}s" for p, g in gaps.items()},
        acknowledged=len(appenders.acked),
        outcomes=dict(appenders.outcomes),
        **more,
    )
