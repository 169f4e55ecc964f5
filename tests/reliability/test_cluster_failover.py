"""Failover on a real three-node cluster: leaders and coordinators die under appends.

Each test appends from several threads to a topic with three replicas and
``min.insync.replicas=2``, breaks the cluster (``kill -9`` a node, two nodes down, a rolling
restart), and checks that every acknowledged append is on the topic exactly once, that the
same store keeps serving without a restart, and prints how long each partition waited
beside how long the cluster itself took to fence the dead node (figures, not assertions).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventsource.errors import NotEnoughReplicasError, StoreUnavailableError
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.projection import ProjectionRunner
from eventsource.store.port import ANY
from examples.bank.domain import MoneyDeposited
from examples.bank.projections import AccountBalances
from tests.e2e.conftest import read_balances
from tests.e2e.helpers import expected_balances, read_topic
from tests.reliability.cluster_load import (
    ACCOUNT,
    Appenders,
    check_exactly_once,
    cluster_settings,
    coordinator_of,
    kill,
    new_store,
    report,
    report_kill,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka_cluster, pytest.mark.slow]

PARTITIONS = 3


def test_killing_the_leader_of_appended_partitions_loses_nothing_and_appends_resume(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    settings = cluster_settings(kafka_cluster, unique_name)
    store = new_store(settings, PARTITIONS, f"{unique_name}.")
    topic = store.topic_for(ACCOUNT)
    try:
        with Appenders(store, PARTITIONS) as appenders:
            appenders.wait_for(60)
            victim = kafka_cluster.leader_of(topic, 0)
            killed_at, fenced = kill(kafka_cluster, victim)
            appenders.wait_for(300)
            gaps = appenders.gaps(killed_at)
        versions = check_exactly_once(settings, store, appenders)
    finally:
        store.close()
    report_kill(
        f"kill -9 node {victim} (leader of {topic}[0])",
        kafka_cluster,
        fenced,
        appenders,
        gaps,
    )
    assert sum(versions.values()) >= len(appenders.acked)


def test_killing_the_transaction_coordinator_of_a_writer_loses_nothing(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    settings = cluster_settings(kafka_cluster, unique_name)
    store = new_store(settings, PARTITIONS, f"{unique_name}.")
    topic = store.topic_for(ACCOUNT)
    transactional_id = f"{settings.application_id}.{topic}.0"
    try:
        with Appenders(store, PARTITIONS) as appenders:
            appenders.wait_for(60)
            victim = coordinator_of(kafka_cluster, transactional_id)
            leader = kafka_cluster.leader_of(topic, 0)
            killed_at, fenced = kill(kafka_cluster, victim)
            appenders.wait_for(300)
            gaps = appenders.gaps(killed_at)
        check_exactly_once(settings, store, appenders)
    finally:
        store.close()
    report_kill(
        f"kill -9 node {victim} (transaction coordinator of {transactional_id}; "
        f"leader of {topic}[0] was node {leader})",
        kafka_cluster,
        fenced,
        appenders,
        gaps,
    )


def test_a_rolling_restart_loses_and_doubles_nothing_and_leaves_no_writer_stuck(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    settings = cluster_settings(kafka_cluster, unique_name)
    store = new_store(settings, PARTITIONS, f"{unique_name}.")
    try:
        with Appenders(store, PARTITIONS) as appenders:
            appenders.wait_for(60)
            began = time.monotonic()
            for node in kafka_cluster.nodes:
                kafka_cluster.stop_node(node.node_id)
                kafka_cluster.restart(node.node_id)
                kafka_cluster.wait_in_sync(180)
                appenders.wait_for(30)
            gaps = appenders.gaps(began)
        check_exactly_once(settings, store, appenders)
        # The same store, never restarted, still appends on every partition.
        for n in range(PARTITIONS * 4):
            store.append(ACCOUNT, f"after-{n}", [MoneyDeposited(amount=1)], ANY, timeout=30)
    finally:
        store.close()
    report(
        "rolling restart of all nodes (SIGTERM, start, wait in sync)",
        kafka_cluster,
        took=f"{time.monotonic() - began:.0f}s",
        longest_gap_per_partition={p: f"{g:.1f}s" for p, g in gaps.items()},
        acknowledged=len(appenders.acked),
        outcomes=dict(appenders.outcomes),
    )


def two_nodes_down(
    cluster: LocalKafkaCluster, unique_name: str, take_down: Callable[[int], object], leader: bool
) -> str:
    """Take two nodes down (the partition's leader among them, or not), append, bring one back.

    Appends must fail with :class:`NotEnoughReplicasError` (never a generic timeout) until
    the node returns, and then succeed on the same store. The first waits for the delivery
    timeout; the next ones are refused at once. Returns the error's message.
    """
    settings = cluster_settings(cluster, unique_name)
    store = new_store(settings, 1, f"{unique_name}.")
    topic = store.topic_for(ACCOUNT)
    try:
        store.append(ACCOUNT, "before", [MoneyDeposited(amount=1)], ANY, timeout=30)
        first = cluster.leader_of(topic, 0)
        others = [n.node_id for n in cluster.nodes if n.node_id != first]
        down = [first, others[0]] if leader else others
        for node_id in down:
            take_down(node_id)

        began = time.monotonic()
        with pytest.raises(NotEnoughReplicasError) as caught:
            for attempt in range(10):  # the leader notices the shrunken ISR within seconds
                store.append(
                    ACCOUNT, f"during-{attempt}", [MoneyDeposited(amount=1)], ANY, timeout=60
                )
        failed_after = time.monotonic() - began
        message = str(caught.value)
        # Later appends are refused at once while the writer recovers (the failed transaction
        # cannot be aborted while replicas are short), not each after the delivery timeout.
        later = []
        for attempt in range(3):
            began = time.monotonic()
            with pytest.raises(NotEnoughReplicasError):
                store.append(ACCOUNT, f"later-{attempt}", [MoneyDeposited(amount=1)], ANY)
            later.append(f"{time.monotonic() - began:.1f}s")
        cluster.restart(down[-1])
        deadline = time.monotonic() + 180  # the writer recovers on its own meanwhile
        while True:
            try:
                store.append(ACCOUNT, "after", [MoneyDeposited(amount=1)], ANY, timeout=60)
                break
            except StoreUnavailableError:  # NotEnoughReplicasError, or still recovering
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert store.version(ACCOUNT, "after") == 1
    finally:
        store.close()
    assert topic in message and "in-sync replicas" in message
    assert caught.value.retriable
    report(
        f"two of three nodes down ({take_down.__name__}, nodes {down}, leader was {first})",
        cluster,
        first_error_after=f"{failed_after:.1f}s",
        later_errors_after=later,
        error=message,
    )
    return message


def test_two_nodes_down_fail_appends_with_not_enough_replicas_until_one_returns(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    two_nodes_down(kafka_cluster, unique_name, kafka_cluster.stop_node, leader=False)


@pytest.mark.parametrize("leader", [False, True], ids=["followers", "leader-and-follower"])
def test_two_nodes_killed_fail_appends_with_not_enough_replicas_until_one_returns(
    kafka_cluster: LocalKafkaCluster, unique_name: str, leader: bool
) -> None:
    # kill -9 takes two of the three controllers along: nobody is left to shrink the ISR,
    # so the metadata still lists the dead brokers as in sync and the leader (if it lives)
    # waits for them; the error must still say that replicas are missing, and which.
    message = two_nodes_down(kafka_cluster, unique_name, kafka_cluster.kill, leader=leader)

    assert "accept connections" in message and "no answer from broker" in message


def test_a_node_down_for_a_minute_under_appends_and_a_projector_keeps_the_read_model_exact(
    kafka_cluster: LocalKafkaCluster, unique_name: str, tmp_path: Path
) -> None:
    settings = cluster_settings(kafka_cluster, unique_name)
    store = new_store(settings, PARTITIONS, f"{unique_name}.")
    topic = store.topic_for(ACCOUNT)
    database_url = f"sqlite:///{tmp_path / 'read_model.db'}"
    name = f"p_{unique_name[-8:]}"  # a projection name is at most 41 characters
    runner = ProjectionRunner(
        AccountBalances(name=name, topics=[topic]),
        settings,
        database_url,
        batch_size=500,
        poll_timeout=0.2,
    )
    stop = threading.Event()
    projector = threading.Thread(target=runner.run, args=(stop,), name="projector")
    try:
        with runner:
            projector.start()
            with Appenders(store, PARTITIONS) as appenders:
                appenders.wait_for(60)
                victim = kafka_cluster.leader_of(topic, 1)
                kafka_cluster.kill(victim)
                down_since = time.monotonic()
                threading.Event().wait(60)  # the scenario: one node down for a minute
                kafka_cluster.restart(victim)
                down_for = time.monotonic() - down_since
                appenders.wait_for(60)
            check_exactly_once(settings, store, appenders)
            expected = expected_balances(read_topic(settings, topic))
            deadline = time.monotonic() + 120
            while read_balances(database_url, name) != expected:
                assert time.monotonic() < deadline, "the projector did not catch up in 120 s"
                time.sleep(0.5)
            stop.set()
            projector.join(60)
    finally:
        stop.set()
        store.close()
    report(
        f"node {victim} (leader of {topic}[1]) down for {down_for:.0f} s under appends and "
        "a projector",
        kafka_cluster,
        acknowledged=len(appenders.acked),
        accounts_in_read_model=len(expected),
        outcomes=dict(appenders.outcomes),
    )
