"""Helpers shared by the integration tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager

import pytest

from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.port import AppendResult
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


@pytest.fixture
def pg_projection_name(postgres_url: str, unique_name: str) -> Iterator[str]:
    """A projection name on the test PostgreSQL; what the projection made there is dropped
    afterwards (the server is shared)."""
    with dropped_afterwards(postgres_url, "p_" + unique_name[-8:]) as name:
        yield name
