"""The read-model database drops the runner's connections mid-batch, again and again: the
runner retries its batches and the read model stays the exact fold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select, text

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import NullListener, ProjectionRunner, wait_for_positions
from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.testing.seed import fold, seed_events
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances, sample_history

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


class Errors(NullListener):
    def __init__(self) -> None:
        self.seen: list[BaseException] = []

    def on_error(self, exc: BaseException) -> None:
        self.seen.append(exc)


@pytest.fixture
def projection_name(postgres_url: str, unique_name: str) -> Iterator[str]:
    name = "d_" + unique_name[-8:]
    yield name
    engine = create_read_model_engine(postgres_url)  # the server is shared: leave nothing behind
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
        for system in (checkpoints_table, projections_table):
            conn.execute(system.delete().where(system.c.projection == name))
    engine.dispose()


def test_dropped_database_connections_are_retried_without_duplicates_or_gaps(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    postgres_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=3)
    history = sample_history(accounts=40, events=6000, seed=8)
    separator = "&" if "?" in postgres_url else "?"
    runner_url = f"{postgres_url}{separator}application_name={projection_name}"
    projection = AccountBalances(name=projection_name, topics=[topic])
    errors = Errors()
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
            # kill only this test's connections, by their application_name
            with admin.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": projection_name},
                )
            time.sleep(0.05)
        while not errors.seen and time.monotonic() < deadline:
            with admin.connect() as conn:  # keep dropping until a batch has felt it
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND state <> 'idle'"
                    ),
                    {"name": projection_name},
                )
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
        with engine.connect() as conn:
            got = {
                r.account_id: (r.balance_cents, r.events)
                for r in conn.execute(select(projection.accounts))
            }
    finally:
        engine.dispose()
    assert got == {k: (int(a.balance * 100), a.version) for k, a in fold(Account, history).items()}
