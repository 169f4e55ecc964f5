"""Two runners in one consumer group; one is SIGKILLed and restarted again and again while
events keep arriving. Partitions move between them on every rebalance; the read model must
still be the exact fold: no record applied twice, none skipped."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_projection_crash import Child, assert_exact, wait_until

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import projection_status
from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.testing.seed import seed_events
from examples.bank.projections import AccountBalances, sample_history

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "rebalance.db")
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    engine = create_read_model_engine(url)  # the server is shared: leave nothing behind
    with engine.begin() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
            for system in (checkpoints_table, projections_table):
                conn.execute(system.delete().where(system.c.projection == name))
    engine.dispose()
    created.clear()


created: list[str] = []


def test_a_member_killed_and_restarted_repeatedly_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    unique_name: str,
) -> None:
    rng = random.Random(3)
    topic = create_topic(partitions=4)
    projection = AccountBalances(name="r_" + unique_name[-8:], topics=[topic])
    created.append(projection.name)
    history = sample_history(accounts=150, events=9000, seed=3)
    produced = threading.Event()

    def produce() -> None:
        for start in range(0, len(history), 500):
            seed_events(kafka_settings, topic, history[start : start + 500])
            time.sleep(0.3)
        produced.set()

    args = (
        kafka_settings.bootstrap_servers,
        topic,
        projection.name,
        database_url,
        "-",
        "100",
        "0.0002",
    )
    producer = threading.Thread(target=produce, daemon=True)
    steady = Child(*args)
    moving = Child(*args)
    producer.start()
    batches_of_moving = 0
    try:
        assert steady.assigned.wait(60), steady.tail()
        for _ in range(3):
            assert moving.assigned.wait(60), moving.tail()
            time.sleep(rng.uniform(0.5, 2.0))
            batches_of_moving += moving.batches
            moving.kill()
            time.sleep(rng.uniform(0.0, 1.0))
            moving = Child(*args)
        assert moving.assigned.wait(60), moving.tail()
        producer.join(120)
        assert produced.is_set()
        wait_until(
            lambda: all(
                s.lag == 0 for s in projection_status(projection, kafka_settings, database_url)
            ),
            120,
            "both runners to catch up",
        )
    finally:
        codes = [steady.terminate(), moving.terminate()]
    assert codes == [0, 0], steady.tail() + moving.tail()
    assert steady.batches > 0 and batches_of_moving + moving.batches > 0, "work was not shared"
    assert_exact(projection, database_url, history, kafka_settings)
