"""Replication defaults on a cluster, the describe warning, and the cluster launcher's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource.cli.topics import replication_warnings
from eventsource.errors import ConfigurationError
from eventsource.kafka.admin import TopicInfo, cluster_defaults
from eventsource.kafka.broker_files import server_properties
from eventsource.kafka.cluster import LocalKafkaCluster


@pytest.mark.parametrize(
    ("brokers", "expected_rf", "expected_isr"),
    [(1, 1, None), (2, 2, None), (3, 3, "2"), (5, 3, "2")],
)
def test_a_new_topic_gets_min_3_brokers_replicas_and_min_insync_2_at_three(
    brokers: int, expected_rf: int, expected_isr: str | None
) -> None:
    rf, config = cluster_defaults(brokers, -1, {"retention.ms": "-1"})

    assert rf == expected_rf
    assert config.get("min.insync.replicas") == expected_isr
    assert config["retention.ms"] == "-1"


def test_explicit_replication_and_min_insync_win() -> None:
    assert cluster_defaults(3, 2, {}) == (2, {})
    assert cluster_defaults(3, -1, {"min.insync.replicas": "3"}) == (
        3,
        {"min.insync.replicas": "3"},
    )


def test_describe_warns_about_an_events_topic_with_one_replica_on_three_brokers() -> None:
    info = TopicInfo("bank.account.events", 6, 1, brokers=3)

    (warning,) = replication_warnings(info)

    assert "replication factor 1 on a cluster of 3 brokers" in warning


def test_describe_warns_about_min_insync_1_on_three_replicas() -> None:
    info = TopicInfo("bank.account.events", 6, 3, brokers=3, min_insync_replicas=1)

    (warning,) = replication_warnings(info)

    assert "min.insync.replicas=1" in warning


def test_no_warning_on_a_single_broker_or_for_a_well_replicated_topic() -> None:
    assert replication_warnings(TopicInfo("a.events", 6, 1, brokers=1)) == []
    assert replication_warnings(TopicInfo("a.events", 6, 3, brokers=3, min_insync_replicas=2)) == []
    assert replication_warnings(TopicInfo("not-events", 6, 1, brokers=3)) == []


def test_cluster_nodes_share_a_static_three_voter_quorum(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(tmp_path, 3, port=19092)

    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert [n.controller_port for n in cluster.nodes] == [19093, 19095, 19097]
    assert len({n.cluster_id for n in cluster.nodes}) == 1
    assert (
        LocalKafkaCluster(tmp_path, 3, port=19092).nodes[0].cluster_id
        == cluster.nodes[0].cluster_id
    )


def test_cluster_server_properties_replicate_internal_topics() -> None:
    text = server_properties(
        9092, 9093, Path("/d"), node_id=2, voters="1@h:1,2@h:2,3@h:3", replicas=3
    )

    assert "node.id=2" in text
    assert "controller.quorum.voters=1@h:1,2@h:2,3@h:3" in text
    assert "controller.quorum.bootstrap.servers" not in text
    assert "transaction.state.log.replication.factor=3" in text
    assert "transaction.state.log.min.isr=2" in text


def test_a_cluster_with_clashing_ports_or_no_brokers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="must all differ"):
        LocalKafkaCluster(tmp_path, 2, ports=[(1, 2), (2, 3)])
    with pytest.raises(ConfigurationError, match="at least one broker"):
        LocalKafkaCluster(tmp_path, 0)
    with pytest.raises(ConfigurationError, match="no node 4"):
        LocalKafkaCluster(tmp_path, 3, port=19092).node(4)
