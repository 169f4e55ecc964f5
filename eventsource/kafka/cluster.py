"""A real multi-node Apache Kafka (KRaft) cluster on 127.0.0.1, for tests and development.

Every node is a combined broker+controller (:class:`LocalKafka` in ``<home>/node-<id>``);
the nodes form a static quorum of as many voters as nodes, share one cluster id, and give
the internal topics (consumer offsets, transaction state) three replicas with a minimum ISR
of two, as a production cluster has them. Broker defaults for ordinary topics stay stock
(one replica, ``min.insync.replicas=1``): what topics get is decided by whoever creates them.

    cluster = LocalKafkaCluster(home, brokers=3, port=19092)
    cluster.start()                  # all nodes, then waits until every one is registered
    cluster.kill(cluster.leader_of("orders.events", 0))   # kill -9 one node
    cluster.restart(2)               # it rejoins; wait_in_sync() until replicas caught up
    cluster.stop()

Node ``i`` (1-based) listens on ``port + 2*(i-1)`` for clients and the next port for the
controller, unless ``ports`` lists (client, controller) pairs explicitly.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsource.errors import BrokerError, ConfigurationError
from eventsource.kafka import broker_files as files
from eventsource.kafka.broker_probe import admin_client
from eventsource.kafka.launcher import DEFAULT_VERSION, BrokerStatus, LocalKafka
from eventsource.kafka.security import LocalSecurity

__all__ = ["ClusterStatus", "LocalKafkaCluster"]

CLUSTER_HEAP = "384m"
"""Heap per node: three nodes fit beside the tests on a small machine."""


@dataclass(frozen=True)
class ClusterStatus:
    """Every node's status, in node id order."""

    nodes: tuple[BrokerStatus, ...]
    bootstrap_servers: str

    @property
    def running(self) -> int:
        """How many nodes run."""
        return sum(1 for node in self.nodes if node.running)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``eventsource dev kafka status --brokers 3 --json``)."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "running": self.running,
            "nodes": [node.to_dict() for node in self.nodes],
        }


class LocalKafkaCluster:
    """Start, stop, kill and restart the nodes of a local KRaft cluster."""

    def __init__(
        self,
        home: Path | None = None,
        brokers: int = 3,
        port: int = 9092,
        *,
        ports: Sequence[tuple[int, int]] | None = None,
        version: str = DEFAULT_VERSION,
        heap: str = CLUSTER_HEAP,
        secure: bool = False,
    ) -> None:
        if brokers < 1:
            raise ConfigurationError(f"a cluster needs at least one broker, got {brokers}")
        if ports is None:
            ports = [(port + 2 * i, port + 2 * i + 1) for i in range(brokers)]
        if len(ports) != brokers:
            raise ConfigurationError(f"{len(ports)} port pairs given for {brokers} brokers")
        flat = [p for pair in ports for p in pair]
        if len(set(flat)) != len(flat):
            raise ConfigurationError(f"the cluster's ports must all differ, got {flat}")
        if home is None:
            home = files.cache_root() / f"kafka-cluster-{ports[0][0]}"
        self.home = Path(home).expanduser().absolute()
        self.version = version
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        cluster_id = self._cluster_id()
        # One CA, keystore and admin login for all nodes (SASL_SSL, SCRAM, ACLs).
        self.security = LocalSecurity(self.home / "security") if secure else None
        self.nodes = tuple(
            LocalKafka(
                home=self.home / f"node-{i + 1}",
                port=client,
                controller_port=controller,
                version=version,
                heap=heap,
                node_id=i + 1,
                voters=voters if brokers > 1 else None,
                replicas=brokers,
                cluster_id=cluster_id if brokers > 1 else None,
                security=self.security,
            )
            for i, (client, controller) in enumerate(ports)
        )

    def __repr__(self) -> str:
        return (
            f"LocalKafkaCluster(home={str(self.home)!r}, brokers={len(self.nodes)}, "
            f"bootstrap_servers={self.bootstrap_servers!r}, version={self.version!r})"
        )

    def _cluster_id(self) -> str:
        # One id for all nodes, kept across restarts of the cluster (storage is formatted once).
        path = self.home / "cluster.json"
        try:
            return str(json.loads(path.read_text())["cluster_id"])
        except (OSError, ValueError, KeyError):
            pass
        self.home.mkdir(parents=True, exist_ok=True)
        cluster_id = files.new_cluster_id()
        path.write_text(json.dumps({"cluster_id": cluster_id}))
        return cluster_id

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties a client needs besides the address (the admin's login)."""
        return self.security.client_config() if self.security is not None else {}

    def node(self, node_id: int) -> LocalKafka:
        """The node with this id (1-based)."""
        if not 1 <= node_id <= len(self.nodes):
            raise ConfigurationError(f"no node {node_id}: the cluster has 1..{len(self.nodes)}")
        return self.nodes[node_id - 1]

    def status(self) -> ClusterStatus:
        """Which node processes are alive."""
        return ClusterStatus(tuple(n.status() for n in self.nodes), self.bootstrap_servers)

    def start(self, timeout: float = 180.0) -> ClusterStatus:
        """Start every node that is not running, then wait until all are registered."""
        began = time.monotonic()
        launched = []
        try:
            for node in self.nodes:
                if not node.status().running:
                    node.launch()
                    launched.append(node)
            for node in launched:
                node.wait_started(max(timeout - (time.monotonic() - began), 1.0))
            self.wait_registered(max(timeout - (time.monotonic() - began), 1.0))
        except BaseException:
            for node in launched:
                node.kill()
            raise
        return self.status()

    def stop(self, timeout: float = 20.0) -> list[int]:
        """Stop every node at once (SIGTERM, then SIGKILL); the ids of the nodes that ran.

        All at once: a node stopped last would wait in vain for a controller quorum that
        left before it, and need the SIGKILL.
        """
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            ran = list(pool.map(lambda node: node.stop(timeout), self.nodes))
        return [node.node_id for node, was in zip(self.nodes, ran, strict=True) if was]

    def kill(self, node_id: int) -> None:
        """SIGKILL one node now (a crash); its data stays for :meth:`restart`."""
        self.node(node_id).kill()

    def stop_node(self, node_id: int, timeout: float = 30.0) -> bool:
        """Stop one node cleanly (SIGTERM: it hands its leaderships over first)."""
        return self.node(node_id).stop(timeout)

    def restart(self, node_id: int, timeout: float = 90.0) -> BrokerStatus:
        """Start one stopped or killed node again and wait until it answers."""
        node = self.node(node_id)
        if node.status().running:
            node.kill()
        node.launch()
        return node.wait_started(timeout)

    def heal(self, timeout: float = 180.0) -> list[int]:
        """Restart every node that is down, then wait until all replicas are in sync."""
        restarted = []
        for node in self.nodes:
            if not node.status().running:
                self.restart(node.node_id)
                restarted.append(node.node_id)
        self.wait_in_sync(timeout)
        return restarted

    def _metadata(self, timeout: float) -> Any:
        from confluent_kafka import KafkaException

        try:
            return admin_client(self.bootstrap_servers, self.client_config()).list_topics(
                timeout=timeout
            )
        except KafkaException as exc:
            raise BrokerError(
                f"no node of the cluster at {self.bootstrap_servers} answered: {exc}",
                retriable=True,
            ) from exc

    def wait_registered(self, timeout: float = 60.0, count: int | None = None) -> None:
        """Wait until ``count`` (default: all) brokers are registered with the controller."""
        want = len(self.nodes) if count is None else count
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = len(self._metadata(min(5.0, timeout)).brokers)
            except BrokerError:
                seen = 0
            if seen >= want:
                return
            time.sleep(0.2)
        raise BrokerError(
            f"only {seen} of {want} brokers of {self.bootstrap_servers} registered within "
            f"{timeout:.0f} s",
            retriable=True,
        )

    def wait_in_sync(self, timeout: float = 120.0) -> None:
        """Wait until every partition of every topic has all its replicas in sync."""
        deadline = time.monotonic() + timeout
        lagging: list[str] = []
        while time.monotonic() < deadline:
            try:
                metadata = self._metadata(5.0)
            except BrokerError:
                time.sleep(0.2)
                continue
            lagging = [
                f"{name}[{p.id}]"
                for name, topic in metadata.topics.items()
                for p in topic.partitions.values()
                if p.leader < 0 or set(p.isrs) != set(p.replicas)
            ]
            if not lagging and len(metadata.brokers) == len(self.nodes):
                return
            time.sleep(0.25)
        raise BrokerError(
            f"replicas of {len(lagging)} partitions were still out of sync after "
            f"{timeout:.0f} s: {', '.join(lagging[:10])}",
            retriable=True,
        )

    def leader_of(self, topic: str, partition: int) -> int:
        """The node id leading ``topic``'s ``partition`` now (-1 while it has none)."""
        found = self._metadata(10.0).topics.get(topic)
        if found is None or partition not in found.partitions:
            raise ConfigurationError(f"topic {topic!r} has no partition {partition}")
        leader: int = found.partitions[partition].leader
        return leader

    def wait_for_leader(
        self, topic: str, partition: int, accept: Callable[[int], bool], timeout: float = 60.0
    ) -> int:
        """Wait until ``accept(leader id)`` holds for the partition (-1: no leader); the id."""
        deadline = time.monotonic() + timeout
        leader = -2
        while time.monotonic() < deadline:
            with contextlib.suppress(BrokerError):
                leader = self.leader_of(topic, partition)
                if accept(leader):
                    return leader
            time.sleep(0.1)
        raise BrokerError(
            f"{topic}[{partition}] still had leader {leader} after {timeout:.0f} s", retriable=True
        )
