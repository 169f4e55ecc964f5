"""What the read-model engine does when a connection goes away under it: one dropped while
idle in the pool is found dead by the next checkout's pre-ping and replaced (for the runner
as for any reader), and Ctrl-C during a query stays a KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, select, text

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner
from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.testing.seed import fold, seed_events
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances, sample_history

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def projection_name(postgres_url: str, unique_name: str) -> Iterator[str]:
    name = "k_" + unique_name[-8:]
    yield name
    engine = create_read_model_engine(postgres_url)  # the server is shared: leave nothing behind
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
        for system in (checkpoints_table, projections_table):
            conn.execute(system.delete().where(system.c.projection == name))
    engine.dispose()


def _url(postgres_url: str, application_name: str) -> str:
    separator = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{separator}application_name={application_name}"


def _terminate(admin: Engine, application_name: str) -> int:
    """Terminate every backend of ``application_name``; how many there were."""
    with admin.connect() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": application_name},
            ).all()
        )


def test_an_engine_reconnects_when_its_idle_pooled_connection_was_dropped(
    postgres_url: str, unique_name: str
) -> None:
    engine = create_read_model_engine(_url(postgres_url, unique_name))
    admin = create_read_model_engine(postgres_url)
    try:
        with engine.connect() as conn:  # the connection goes back to the pool, idle
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert _terminate(admin, unique_name) == 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2
    finally:
        engine.dispose()
        admin.dispose()


def test_a_runner_whose_idle_connection_was_dropped_goes_on_applying(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    postgres_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=2)
    history = sample_history(accounts=10, events=400, seed=5)
    projection = AccountBalances(name=projection_name, topics=[topic])
    admin = create_read_model_engine(postgres_url)
    url = _url(postgres_url, projection_name)
    try:
        with ProjectionRunner(projection, kafka_settings, url, batch_size=50) as runner:
            after = seed_events(kafka_settings, topic, history[:200])
            runner.run_until_caught_up(60, after=after)
            assert _terminate(admin, projection_name) >= 1  # the runner's pooled connection
            runner.run_until_caught_up(60)  # nothing new: checks its checkpoints
            after = seed_events(kafka_settings, topic, history[200:])
            runner.run_until_caught_up(60, after=after)
        with admin.connect() as conn:
            got = {
                r.account_id: (r.balance_cents, r.events)
                for r in conn.execute(select(projection.accounts))
            }
    finally:
        admin.dispose()
    assert got == {k: (int(a.balance * 100), a.version) for k, a in fold(Account, history).items()}


def test_ctrl_c_during_a_query_stays_a_keyboard_interrupt(
    postgres_url: str, unique_name: str
) -> None:
    engine = create_read_model_engine(_url(postgres_url, unique_name))
    admin = create_read_model_engine(postgres_url)

    def interrupt_once_the_query_runs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with admin.connect() as conn:
                running = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                        "AND state = 'active' AND query LIKE '%pg_sleep%'"
                    ),
                    {"name": unique_name},
                ).scalar_one()
            if running:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    interrupter = threading.Thread(target=interrupt_once_the_query_runs)
    try:
        with engine.connect() as conn:
            interrupter.start()
            with pytest.raises(KeyboardInterrupt):
                conn.execute(text("SELECT pg_sleep(60)"))
    finally:
        interrupter.join(60)
        engine.dispose()
        admin.dispose()
