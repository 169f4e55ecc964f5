"""Helpers shared by the integration tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.port import AppendResult
from eventsource.testing import seed
from tests.integration.read_model_db import dropped_afterwards

Held = Callable[
    [PartitionWriter, Callable[[], Future[AppendResult]]],
    AbstractContextManager[tuple[Future[AppendResult], Callable[[], None]]],
]


@contextmanager
def held(
    writer: PartitionWriter, first: Callable[[], Future[AppendResult]]
) -> Iterator[tuple[Future[AppendResult], Callable[[], None]]]:
    """Run ``first`` and hold the writer in its transaction until ``release()`` is called;
    appends made meanwhile queue up for the next group commit."""
    entered, go = threading.Event(), threading.Event()

    def hook(stage: str) -> None:
        if stage == "before_commit" and not go.is_set():
            entered.set()
            go.wait(60)

    writer.fault_hook = hook
    try:
        future = first()
        assert entered.wait(30), "the writer did not start the first transaction"
        yield future, go.set
    finally:
        go.set()
        writer.fault_hook = None


@pytest.fixture
def hold() -> Held:
    """``with hold(writer, first) as (future, release):`` runs ``first()`` and keeps the
    writer inside that append's transaction until ``release()``; appends made meanwhile
    queue up for the next group commit."""
    return held


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A read model's database: a SQLite file of this test's, then the test PostgreSQL (the
    server is shared: use unique projection names, or drop what the test made)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'read.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def topic(kafka_settings: KafkaSettings, unique_name: str) -> str:
    """``<unique name>.events``, a fresh topic of three partitions."""
    name = f"{unique_name}.events"
    seed.create_topic(kafka_settings, name, partitions=3)
    return name


@pytest.fixture
def pg_projection_name(postgres_url: str, unique_name: str) -> Iterator[str]:
    """A projection name on the test PostgreSQL; what the projection made there is dropped
    afterwards (the server is shared)."""
    with dropped_afterwards(postgres_url, "p_" + unique_name[-8:]) as name:
        yield name
