"""The read-model database drops the runner's connections mid-batch, again and again: the
runner retries its batches and the read model stays the exact fold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner, wait_for_positions
from eventsource.projection.store import create_read_model_engine
from eventsource.testing.seed import seed_events
from examples.bank.projections import AccountBalances, sample_history
from tests.integration.read_model_db import (
    ErrorsSeen,
    balances,
    folded_balances,
    named,
    terminate,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_dropped_database_connections_are_retried_without_duplicates_or_gaps(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    postgres_url: str,
    pg_projection_name: str,
) -> None:
    topic = create_topic(partitions=3)
    history = sample_history(accounts=40, events=6000, seed=8)
    runner_url = named(postgres_url, pg_projection_name)
    projection = AccountBalances(name=pg_projection_name, topics=[topic])
    errors = ErrorsSeen()
    stop = threading.Event()
    runner = ProjectionRunner(
        projection, kafka_settings, runner_url, batch_size=100, poll_timeout=0.1, listener=errors
    )
    admin = create_read_model_engine(postgres_url)
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        positions = []
        deadline = time.monotonic() + 60
        for start in range(0, len(history), 500):
            positions += seed_events(kafka_settings, topic, history[start : start + 500])
            terminate(admin, pg_projection_name)  # only this test's connections
            time.sleep(0.05)
        while not errors.seen and time.monotonic() < deadline:
            terminate(admin, pg_projection_name, busy_only=True)  # until a batch has felt it
        wait_for_positions(projection, postgres_url, positions, timeout=60)
    finally:
        stop.set()
        thread.join(30)
        runner.close()
        admin.dispose()
    assert not thread.is_alive()
    assert errors.seen, "no batch ever lost its connection: the test proved nothing"
    engine = create_read_model_engine(postgres_url)
    try:
        got = balances(engine, projection)
    finally:
        engine.dispose()
    assert got == folded_balances(history)
