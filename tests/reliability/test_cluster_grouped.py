"""Grouped writers behind a router on a real three-node cluster: a partition leader dies.

Two :class:`GroupedKafkaEventStore` members share the partitions and serve routing; the
appenders reach them through a :class:`GroupRouter` only. The leader of one partition, which
is also the coordinator of the writers group (the worst case: the members' heartbeats go
nowhere until the controller fences it), is killed with ``kill -9`` and restarted while
they append. Afterwards every acknowledged append is on the topic exactly once, versions
are contiguous, and each owner's state of every aggregate equals the fold of the topic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventsource.domain import Event
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import (
    append_server_group,
    events_topic,
    member_application_id,
    writers_group,
)
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from eventsource.store.kafka.scaleout.group_store_route import GroupRouter, serve_routing
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendResult
from examples.bank.domain import Account
from examples.bank.projections import cents
from tests.e2e.helpers import expected_balances, read_topic
from tests.reliability.cluster_load import (
    ACCOUNT,
    Appenders,
    check_exactly_once,
    cluster_settings,
    elect_preferred_offsets_leaders,
    group_coordinator_of,
    kill,
    report_kill,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka_cluster, pytest.mark.slow]

PARTITIONS = 2
OUTAGE_S = 120.0  # the router's patience: the cluster fences a dead node in about 10 s


class Routed:
    """The router as the appenders' store: ``append`` takes their timeout argument, and
    ``version`` (asked after an uncertain append) is retried until the owner answers."""

    def __init__(self, router: GroupRouter) -> None:
        self.router = router

    def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        timeout: float,
    ) -> AppendResult:
        del timeout  # the router's own: its request timeout and retry_for
        return self.router.append(aggregate_type, aggregate_id, events, expected_version)

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        deadline = time.monotonic() + OUTAGE_S
        while True:
            try:
                return self.router.version(aggregate_type, aggregate_id)
            except StoreUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def member(settings: KafkaSettings, prefix: str, name: str, root: Path) -> GroupedKafkaEventStore:
    return GroupedKafkaEventStore(
        settings,
        [Account],
        directory=root / name,
        member=name,
        partitions=PARTITIONS,
        topic_prefix=prefix,
    ).start(timeout=120)


def settled(*stores: GroupedKafkaEventStore, timeout: float = 180) -> None:
    """Until the stores own every partition between them, each once, each some, all serving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [p for s in stores for p in s.owned]
        if (
            len(owned) == len(set(owned)) == PARTITIONS
            and all(s.owned for s in stores)
            and all(s.wait_serving(30) for s in stores)
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"no settled assignment: {[sorted(s.owned) for s in stores]}")


def coordinated_by(cluster: LocalKafkaCluster, node_id: int, base: str) -> str:
    """An application id ``<base>_<n>`` whose writers group ``node_id`` coordinates."""
    for _ in range(2):
        for n in range(60):  # each has a one-in-three chance on three balanced nodes
            application_id = f"{base}_{n}"
            if group_coordinator_of(cluster, writers_group(application_id)) == node_id:
                return application_id
        # A node restarted by an earlier test (make chaos runs them in one session) leads no
        # __consumer_offsets partition yet: none of 60 ids mapped to it.
        elect_preferred_offsets_leaders(cluster)
    raise AssertionError(f"no application id {base}_<n> has its writers group on node {node_id}")


def owner_of(aggregate_id: str, *stores: GroupedKafkaEventStore) -> GroupedKafkaEventStore:
    partition = partition_for_id(aggregate_id, PARTITIONS)
    return next(s for s in stores if any(p == partition for _, p in s.owned))


@pytest.mark.timeout(900)  # two failovers and a restart on a loaded machine
def test_grouped_writers_behind_a_router_lose_and_double_nothing_when_a_leader_is_killed(
    kafka_cluster: LocalKafkaCluster, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    topic = events_topic(ACCOUNT, prefix)
    ensure_topic(cluster_settings(kafka_cluster, unique_name), topic, PARTITIONS)
    victim = kafka_cluster.leader_of(topic, 0)
    settings = cluster_settings(kafka_cluster, coordinated_by(kafka_cluster, victim, unique_name))
    app = settings.application_id
    with (
        member(settings, prefix, "w-a", tmp_path) as a,
        member(settings, prefix, "w-b", tmp_path) as b,
    ):
        settled(a, b)
        with (
            serve_routing(a, timeout=120),
            serve_routing(b, timeout=120),
            GroupRouter(
                settings, a.codec, partitions=PARTITIONS, topic_prefix=prefix, retry_for=OUTAGE_S
            ) as router,
            Appenders(Routed(router), PARTITIONS, threads=4) as appenders,
        ):
            appenders.wait_for(40)
            roles = [
                group
                for group in (
                    writers_group(app),
                    append_server_group(member_application_id(app, "w-a")),
                    append_server_group(member_application_id(app, "w-b")),
                )
                if group_coordinator_of(kafka_cluster, group) == victim
            ]
            leads = [p for p in range(PARTITIONS) if kafka_cluster.leader_of(topic, p) == victim]
            released = a.ownership.released + b.ownership.released
            killed_at, fenced = kill(kafka_cluster, victim)
            appenders.wait_for(20, timeout=300)
            # The members live: their sessions outlast the coordinator's failover, so the
            # group keeps its assignment (a lost session would release every partition).
            released = a.ownership.released + b.ownership.released - released
            kafka_cluster.restart(victim)
            kafka_cluster.wait_in_sync(180)
            appenders.wait_for(20, timeout=300)
            gaps = appenders.gaps(killed_at)
        versions = check_exactly_once(settings, a, appenders)
        settled(a, b)
        expected = expected_balances(read_topic(settings, topic))
        folded = {}
        for aggregate_id in expected:
            account = owner_of(aggregate_id, a, b).load(Account, aggregate_id)
            folded[aggregate_id] = (cents(account.balance), account.version)

    report_kill(
        f"kill -9 node {victim} (leader of {topic}{leads}, coordinator of {roles}) "
        "under two grouped writers and a router",
        kafka_cluster,
        fenced,
        appenders,
        gaps,
        released_during_failover=released,
    )
    assert sum(versions.values()) >= len(appenders.acked)
    assert folded == expected
    assert released == 0, f"the members released {released} partitions: sessions lost"
