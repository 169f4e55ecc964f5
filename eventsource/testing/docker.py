"""Kafka and PostgreSQL in Docker containers (testcontainers), when a Docker engine answers.

Machines with only a ``docker`` client binary (no engine behind it) must not wait or fail:
:func:`docker_engine_answers` gives up after about 1.5 s and the harness falls back to the
local launcher and a throwaway PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from eventsource.kafka.broker_probe import wait_for_broker
from eventsource.kafka.broker_process import free_port

__all__ = [
    "KAFKA_IMAGE",
    "POSTGRES_IMAGE",
    "docker_engine_answers",
    "kafka_container",
    "postgres_container",
]

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16"


def docker_engine_answers(timeout: float = 1.5) -> bool:
    """Whether a Docker engine answers ``GET /_ping`` within ``timeout`` seconds.

    Speaks HTTP over the engine socket directly (unix or tcp ``DOCKER_HOST``): no SDK
    objects, so nothing is left open when the answer is no. ``EVENTSOURCE_NO_DOCKER=1``
    forces False (use the local launcher even where Docker runs).
    """
    if os.environ.get("EVENTSOURCE_NO_DOCKER"):
        return False
    parsed = urllib.parse.urlparse(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")
    try:
        if parsed.scheme == "unix":
            if not os.path.exists(parsed.path):
                return False
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            with conn:
                conn.connect(parsed.path)
                return _ping(conn)
        if parsed.scheme in ("tcp", "http") and parsed.hostname:
            address = (parsed.hostname, parsed.port or 2375)
            with socket.create_connection(address, timeout=timeout) as conn:
                conn.settimeout(timeout)
                return _ping(conn)
    except OSError:
        return False
    return False  # TLS or an unknown scheme: not worth a slow probe; use the launcher


def _ping(conn: socket.socket) -> bool:
    conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    answer = conn.recv(256)
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0] + b" "


def _docker_host_address() -> str:
    """Where ports published by the engine are reachable from this process."""
    parsed = urllib.parse.urlparse(os.environ.get("DOCKER_HOST", ""))
    if parsed.scheme in ("tcp", "http", "https") and parsed.hostname:
        return parsed.hostname
    return "127.0.0.1"


@contextmanager
def kafka_container(image: str = KAFKA_IMAGE, timeout: float = 120.0) -> Iterator[str]:
    """A single-node KRaft broker from the official image; yields its bootstrap address.

    The host port is chosen up front so the advertised listener can name it; the internal
    topics get one replica, as on the local launcher.
    """
    from testcontainers.core.container import DockerContainer

    host, port = _docker_host_address(), free_port()
    container = (
        DockerContainer(image)
        .with_bind_ports(9092, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_NUM_PARTITIONS="3",
        )
    )
    container.start()
    try:
        bootstrap = f"{host}:{port}"
        wait_for_broker(bootstrap, timeout)
        yield bootstrap
    finally:
        container.stop()


@contextmanager
def postgres_container(image: str = POSTGRES_IMAGE) -> Iterator[str]:
    """A PostgreSQL container; yields its ``postgresql+psycopg://`` URL."""
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(image, driver="psycopg") as container:
        url: str = container.get_connection_url()
        yield url
