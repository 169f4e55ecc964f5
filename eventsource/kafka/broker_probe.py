"""Does a Kafka broker answer? Bounded metadata probes, so no caller ever hangs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventsource.errors import BrokerError
from eventsource.kafka.client_logs import admin_log_config

__all__ = ["ClusterInfo", "admin_client", "probe", "wait_for_broker"]


@dataclass(frozen=True)
class ClusterInfo:
    """What a broker told us when it answered a metadata request."""

    bootstrap_servers: str
    cluster_id: str | None
    brokers: int
    topics: int


def admin_client(bootstrap_servers: str, extra: Mapping[str, Any] | None = None) -> Any:
    """An AdminClient tuned for readiness probing (fast reconnects, quiet logs).

    ``extra``: further librdkafka properties (a secure broker's login).
    """
    from confluent_kafka.admin import AdminClient

    # Keep reconnect attempts frequent so readiness is seen within a fraction of a second;
    # librdkafka's "connection refused" chatter goes through the client log.
    config = admin_log_config(
        {
            "bootstrap.servers": bootstrap_servers,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
            **(extra or {}),
        }
    )
    return AdminClient(config)


def probe(admin: Any, bootstrap_servers: str, timeout: float) -> ClusterInfo | None:
    """One bounded metadata request: what the broker said, or None if it did not answer."""
    from confluent_kafka import KafkaException

    try:
        metadata = admin.list_topics(timeout=max(timeout, 0.1))
    except KafkaException:
        return None
    if not metadata.brokers:
        return None
    return ClusterInfo(
        bootstrap_servers=bootstrap_servers,
        cluster_id=metadata.cluster_id,
        brokers=len(metadata.brokers),
        topics=len(metadata.topics),
    )


def wait_for_broker(
    bootstrap_servers: str, timeout: float = 10.0, extra: Mapping[str, Any] | None = None
) -> ClusterInfo:
    """Return once a broker at ``bootstrap_servers`` answers a metadata request.

    Raises :class:`BrokerError` (retriable) after ``timeout`` seconds instead of hanging.
    """
    admin = admin_client(bootstrap_servers, extra)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        info = probe(admin, bootstrap_servers, min(1.0, remaining))
        if info is not None:
            return info
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"no Kafka broker answered at {bootstrap_servers} within {timeout:.0f} s; "
                "start one (`eventsource dev kafka start` or `make kafka-up`) or point "
                "EVENTSOURCE_BOOTSTRAP_SERVERS at a running broker",
                retriable=True,
            )
