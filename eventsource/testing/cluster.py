"""pytest fixtures for tests that need a real multi-broker cluster (failover, restarts).

A test marked ``@pytest.mark.kafka_cluster`` (or asking for the ``kafka_cluster`` fixture,
which marks it) runs against a :class:`LocalKafkaCluster` of three KRaft nodes
(``EVENTSOURCE_TEST_CLUSTER_BROKERS`` to change the count), started on free ports the first
time a test needs it and stopped when the session ends. The cluster is the test's to break:
kill nodes, restart them. Afterwards the fixture restarts whatever node is down and waits
until every replica is back in sync, so the next test starts from a whole cluster.

``kafka_secure_cluster`` is another such cluster, one per test module (it is not
shared across modules, so a module's users and ACLs stay its own): its clients log in with
SASL/SCRAM-SHA-512 over TLS and the standard authorizer enforces ACLs
(:mod:`eventsource.kafka.security`); ``cluster.client_config()`` logs in as the super
user, :class:`eventsource.kafka.acls.AclAdmin` creates users and ACLs.

``-m "not kafka_cluster"`` leaves these tests out; the single-broker fixtures
(``kafka_broker``, ``bootstrap_servers``) are unaffected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsource.errors import EventSourceError
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.testing.session import _announce, _fail_session

__all__ = ["CLUSTER_MARKER"]

CLUSTER_MARKER = "kafka_cluster"
ENV_CLUSTER_BROKERS = "EVENTSOURCE_TEST_CLUSTER_BROKERS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{CLUSTER_MARKER}: runs on a local three-broker KRaft cluster "
        "(fixture kafka_cluster; nodes may be killed and restarted)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if CLUSTER_MARKER in names or "kafka_secure_cluster" in names:
            item.add_marker(CLUSTER_MARKER)


@pytest.fixture(scope="session")
def _eventsource_cluster(request: pytest.FixtureRequest) -> Iterator[LocalKafkaCluster]:
    yield from _running_cluster(request, secure=False)


@pytest.fixture(scope="module")
def kafka_secure_cluster(request: pytest.FixtureRequest) -> Iterator[LocalKafkaCluster]:
    """A local cluster with SASL/SCRAM over TLS and ACLs, for one test module."""
    yield from _running_cluster(request, secure=True)


def _running_cluster(request: pytest.FixtureRequest, secure: bool) -> Iterator[LocalKafkaCluster]:
    brokers = int(os.environ.get(ENV_CLUSTER_BROKERS, "3"))
    home = Path(tempfile.mkdtemp(prefix="eventsource-cluster-"))
    cluster = LocalKafkaCluster(
        home, brokers, ports=[(free_port(), free_port()) for _ in range(brokers)], secure=secure
    )
    try:
        try:
            status = cluster.start()
        except EventSourceError as exc:
            failure = f"eventsource: the local {brokers}-broker cluster did not start: {exc}"
        else:
            failure = ""
        if failure:
            _fail_session(request, failure)
        pids = ", ".join(str(node.pid) for node in status.nodes)
        _announce(
            request.config,
            f"eventsource: using a {brokers}-node Apache Kafka {cluster.version} KRaft cluster "
            f"at {cluster.bootstrap_servers}{' (SASL_SSL, SCRAM-SHA-512, ACLs)' if secure else ''}"
            f" (local launcher, pids {pids}, home {home})",
        )
        yield cluster
    finally:
        # Thrown away with its home: SIGKILL every node at once (a clean stop of a cluster
        # takes seconds, and up to its 10 s bound on a loaded machine).
        for node in cluster.nodes:
            cluster.kill(node.node_id)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def kafka_cluster(_eventsource_cluster: LocalKafkaCluster) -> Iterator[LocalKafkaCluster]:
    """The session's local cluster, whole again (every node up, replicas in sync) afterwards."""
    yield _eventsource_cluster
    _eventsource_cluster.heal()
