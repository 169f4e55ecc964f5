"""Two runners that both believe they own every partition (a zombie and its successor):
the checkpoint read under lock in each batch transaction keeps the effect exactly-once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner, RunStats
from eventsource.testing.seed import seed_events
from examples.bank.projections import AccountBalances, sample_history
from tests.integration.read_model_db import balances, drop_projection, folded_balances

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "owners.db")
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    drop_projection(url, "o_" + unique_name[-8:])  # the server is shared: leave nothing behind


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
        got = balances(runners[0].engine, projection)
    finally:
        for runner in runners:
            runner.close()
    assert got == folded_balances(history)
    assert sum(r.applied for r in results) == len(history)  # every record applied once overall
