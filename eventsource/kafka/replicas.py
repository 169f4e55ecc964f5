"""Why appends to a partition cannot be acknowledged: the cluster lacks in-sync replicas.

Asked by a writer after a refused or timed-out append, to replace the client's jargon
("Failed to flush all outstanding messages", "Local: Timed out") with what is wrong.

Two ways to lack replicas, told apart by what the metadata says:

- **The controller shrank the ISR** (brokers were stopped, or died while a controller
  majority lived): the metadata lists fewer in-sync replicas than ``min.insync.replicas``,
  and the leader refuses appends with ``NOT_ENOUGH_REPLICAS``.
- **The metadata is stale** (brokers died with ``kill -9`` and took the controller majority
  with them, as two of three combined nodes do): nobody can shrink the ISR, so the metadata
  still lists the dead brokers as in sync, and appends wait for them until they time out.
  Here the in-sync replicas whose brokers accept no connection are counted as missing.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from eventsource.kafka.config import KafkaSettings

__all__ = ["answering", "replica_shortage"]


def answering(addresses: dict[int, str], timeout: float) -> set[int]:
    """The node ids whose ``host:port`` accepts a TCP connection within ``timeout``."""

    def answers(address: str) -> bool:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            return False

    if not addresses:
        return set()
    with ThreadPoolExecutor(len(addresses), thread_name_prefix="eventsource-probe") as pool:
        found = dict(zip(addresses, pool.map(answers, addresses.values()), strict=True))
    return {node for node, ok in found.items() if ok}


def replica_shortage(
    settings: KafkaSettings, name: str, partition: int, *, timeout: float = 5.0
) -> str | None:
    """Why appends to ``name[partition]`` cannot be acknowledged, if replicas are short.

    None when the partition has ``min.insync.replicas`` in-sync replicas whose brokers
    accept connections, or when that cannot be told (no broker answers, the topic or its
    configuration cannot be read within ``timeout``).
    """
    admin = AdminClient(settings.admin_config())
    try:
        cluster = admin.list_topics(timeout=timeout)
    except KafkaException:
        return None
    topic = cluster.topics.get(name)
    if topic is None or topic.error is not None or partition not in topic.partitions:
        return None
    addresses = {b.id: f"{b.host}:{b.port}" for b in cluster.brokers.values()}
    up = answering(addresses, timeout=min(timeout, 1.0))
    needed = _min_insync_replicas(admin, name, up, timeout) if up else None
    if needed is None:
        return None
    in_sync = list(topic.partitions[partition].isrs)
    replicas = len(topic.partitions[partition].replicas)
    if len(in_sync) < needed:
        state = f"{len(in_sync)} of {replicas} replicas are in sync"
    else:
        silent = [node for node in in_sync if node not in up]
        if len(in_sync) - len(silent) >= needed:
            return None
        where = ", ".join(f"broker {node} at {addresses.get(node, '?')}" for node in silent)
        state = (
            f"only {len(in_sync) - len(silent)} of its {len(in_sync)} in-sync replicas' "
            f"brokers accept connections (no answer from {where}; with too few controllers "
            "left the cluster cannot even shrink the in-sync set)"
        )
    return (
        f"the cluster lacks in-sync replicas of {name}[{partition}]: {state}, "
        f"min.insync.replicas is {needed} (NOT_ENOUGH_REPLICAS), so no append can be "
        "acknowledged; brokers are down: appends succeed again once enough of them are back"
    )


def _min_insync_replicas(admin: AdminClient, name: str, up: set[int], timeout: float) -> int | None:
    """The topic's effective ``min.insync.replicas``, asked of a broker that answers.

    A BROKER resource in the request sends it to that broker: without one librdkafka asks
    the controller the metadata names, which a broker that lost its controller quorum may
    still report although it is dead (the request then waits for the timeout).
    """
    topic = ConfigResource(ConfigResource.Type.TOPIC, name)
    broker = ConfigResource(ConfigResource.Type.BROKER, str(min(up)))
    try:
        futures = admin.describe_configs([topic, broker], request_timeout=timeout)
        entries = futures[topic].result(timeout)
    except (KafkaException, TimeoutError):
        return None
    value = entries.get("min.insync.replicas")
    return int(value.value) if value is not None and value.value is not None else 1
