"""pytest plugin: a real Kafka broker and a real PostgreSQL for every test session.

Registered through the ``pytest11`` entry point, so any project that installs eventsource
gets the fixtures. (Minimal version: environment variables only; the launcher fallback is
being added.)
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest

from eventsource.kafka.config import KafkaSettings


@pytest.fixture(scope="session")
def bootstrap_servers() -> Iterator[str]:
    """Bootstrap address of a real broker."""
    servers = os.environ.get("EVENTSOURCE_BOOTSTRAP_SERVERS")
    if not servers:
        pytest.fail("EVENTSOURCE_BOOTSTRAP_SERVERS is not set")
    yield servers


@pytest.fixture(scope="session")
def kafka_settings(bootstrap_servers: str) -> KafkaSettings:
    """Settings pointing at the session's broker."""
    return KafkaSettings(bootstrap_servers=bootstrap_servers)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, safe for topics, groups and SQL identifiers."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of a real PostgreSQL server."""
    url = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("EVENTSOURCE_TEST_POSTGRES_URL is not set")
    return url
