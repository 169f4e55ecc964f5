"""A local three-node KRaft cluster: its launcher, and topic administration while a node is down.

One cluster serves the whole module (starting three nodes costs 30-60 s on a loaded machine);
every test leaves it whole again (the ``kafka_cluster`` fixture restarts killed nodes). The
tests that kill a node wait for the controller to fence it (about 10 s) and for the restart:
they are ``slow`` and run in ``make chaos``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from typer.testing import CliRunner

from eventsource.cli.app import _register, app
from eventsource.errors import StoreUnavailableError, TopicNotFoundError
from eventsource.kafka.admin import TopicInfo, describe_topic, end_offsets, ensure_topic
from eventsource.kafka.client_logs import admin_log_config
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.kafka.config import KafkaSettings
from eventsource.store.routing import topics as routing

pytestmark = [pytest.mark.integration, pytest.mark.kafka_cluster]


def settings_for(cluster: LocalKafkaCluster) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=cluster.bootstrap_servers)


def describe_when_every_broker_knows(settings: KafkaSettings, topic: str) -> TopicInfo:
    """``describe_topic`` once the broker it asks knows a topic just created through another:
    brokers learn new topics from the controller a moment apart."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return describe_topic(settings, topic)
        except TopicNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def kill_and_wait_leaderless(cluster: LocalKafkaCluster, node_id: int, topic: str) -> None:
    """Kill a node, then wait until the controller fenced it (its partition has no leader)."""
    cluster.kill(node_id)
    cluster.wait_for_leader(topic, node_id - 1, lambda leader: leader == -1, timeout=60)


@pytest.fixture
def single_replica_topic(kafka_cluster: LocalKafkaCluster, unique_name: str) -> Iterator[str]:
    """Three partitions with one replica each, partition p on node p+1 (no failover at all)."""
    admin = AdminClient(admin_log_config({"bootstrap.servers": kafka_cluster.bootstrap_servers}))
    topic = NewTopic(unique_name, num_partitions=3, replica_assignment=[[1], [2], [3]])
    admin.create_topics([topic], operation_timeout=30)[unique_name].result(timeout=30)
    kafka_cluster.wait_in_sync(60)
    yield unique_name
    kafka_cluster.heal()
    admin.delete_topics([unique_name], operation_timeout=30)[unique_name].result(timeout=30)


def test_the_cluster_has_three_voting_nodes_with_replicated_internal_topics(
    kafka_cluster: LocalKafkaCluster,
) -> None:
    status = kafka_cluster.status()
    config = (kafka_cluster.node(2).home / "config" / "server.properties").read_text()

    assert status.running == 3
    assert len({node.pid for node in status.nodes}) == 3
    assert "controller.quorum.voters=1@127.0.0.1:" in config
    assert config.count("@127.0.0.1:") == 3
    assert "transaction.state.log.replication.factor=3" in config
    assert "transaction.state.log.min.isr=2" in config
    assert "offsets.topic.replication.factor=3" in config
    print(f"cluster: {status.running} nodes, Apache Kafka {kafka_cluster.version}")


@pytest.mark.slow
def test_a_partition_without_a_leader_is_not_a_missing_topic(
    kafka_cluster: LocalKafkaCluster, single_replica_topic: str
) -> None:
    settings = settings_for(kafka_cluster)
    kill_and_wait_leaderless(kafka_cluster, 2, single_replica_topic)

    info = describe_topic(settings, single_replica_topic)
    again = ensure_topic(settings, single_replica_topic, 3, timeout=10)

    assert info.partitions == 3
    assert info.leaderless == (1,)
    assert again.partitions == 3


@pytest.mark.slow
def test_end_offsets_name_the_partition_that_has_no_leader(
    kafka_cluster: LocalKafkaCluster, single_replica_topic: str
) -> None:
    kill_and_wait_leaderless(kafka_cluster, 3, single_replica_topic)

    with pytest.raises(StoreUnavailableError, match=r"partition 2 .*no leader") as caught:
        end_offsets(settings_for(kafka_cluster), single_replica_topic, timeout=5)

    assert caught.value.retriable


@pytest.mark.slow
def test_a_killed_node_restarts_and_rejoins(
    kafka_cluster: LocalKafkaCluster, single_replica_topic: str
) -> None:
    kafka_cluster.kill(1)
    assert kafka_cluster.status().running == 2

    kafka_cluster.restart(1)
    kafka_cluster.wait_in_sync(120)

    assert kafka_cluster.status().running == 3
    assert kafka_cluster.leader_of(single_replica_topic, 0) == 1


def test_an_events_topic_gets_three_replicas_and_min_insync_two_on_a_cluster(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    settings = settings_for(kafka_cluster)

    info = ensure_topic(settings, f"{unique_name}.events", 3)

    assert info.replication_factor == 3
    assert info.config["min.insync.replicas"] == "2"
    assert info.brokers == 3


def test_explicit_replication_settings_win_over_the_cluster_defaults(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    settings = settings_for(kafka_cluster)

    info = ensure_topic(
        settings,
        f"{unique_name}.events",
        3,
        replication_factor=3,
        config={"retention.ms": "-1", "min.insync.replicas": "3"},
    )
    two = ensure_topic(settings, f"{unique_name}.two.events", 3, replication_factor=2)

    assert (info.replication_factor, info.config["min.insync.replicas"]) == (3, "3")
    assert two.replication_factor == 2
    assert "min.insync.replicas" not in two.config


def test_topics_describe_warns_about_an_events_topic_with_fewer_than_three_replicas(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    topic = f"{unique_name}.events"
    ensure_topic(settings_for(kafka_cluster), topic, 3, replication_factor=1)

    _register()
    result = CliRunner().invoke(
        app, ["topics", "describe", topic, "-b", kafka_cluster.bootstrap_servers]
    )

    assert result.exit_code == 0, result.output
    assert "warning" in result.output
    assert "replication factor 1 on a cluster of 3 brokers" in result.output


def test_routing_topics_are_replicated_like_events_topics_on_a_cluster(
    kafka_cluster: LocalKafkaCluster, unique_name: str
) -> None:
    # A routing topic with one copy stops routing to every member whose requests or
    # replies partition that copy's node led, for as long as the node is down.
    settings = settings_for(kafka_cluster)
    topic = routing.requests_topic(unique_name)
    routing.ensure_topic(settings, topic)

    info = describe_when_every_broker_knows(settings, topic)

    assert info.replication_factor == 3
