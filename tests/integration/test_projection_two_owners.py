"""Two runners that both believe they own every partition (a zombie and its successor):
the checkpoint read under lock in each batch transaction keeps the effect exactly-once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner, RunStats
from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.testing.seed import fold, seed_events
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances, sample_history

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "owners.db")
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    name = "o_" + unique_name[-8:]
    engine = create_read_model_engine(url)  # the server is shared: leave nothing behind
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
        for system in (checkpoints_table, projections_table):
            conn.execute(system.delete().where(system.c.projection == name))
    engine.dispose()


def test_two_owners_of_the_same_partitions_never_apply_a_record_twice(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    unique_name: str,
) -> None:
    topic = create_topic(partitions=3)
    history = sample_history(accounts=60, events=6000, seed=21)
    seed_events(kafka_settings, topic, history)
    projection = AccountBalances(name="o_" + unique_name[-8:], topics=[topic])
    # Different consumer groups: each runner is assigned every partition, as a zombie
    # whose session expired and its successor briefly are.
    runners = [
        ProjectionRunner(
            projection, kafka_settings, database_url, batch_size=150, group_id=f"{unique_name}.{i}"
        )
        for i in range(2)
    ]
    results: list[RunStats] = []
    errors: list[BaseException] = []

    def catch_up(runner: ProjectionRunner) -> None:
        try:
            results.append(runner.run_until_caught_up(timeout=120))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=catch_up, args=(r,)) for r in runners]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
        assert not errors, errors
        with runners[0].engine.connect() as conn:
            got = {
                r.account_id: (r.balance_cents, r.events)
                for r in conn.execute(select(projection.accounts))
            }
    finally:
        for runner in runners:
            runner.close()
    expected = {k: (int(a.balance * 100), a.version) for k, a in fold(Account, history).items()}
    assert got == expected
    assert sum(r.applied for r in results) == len(history)  # every record applied once overall
