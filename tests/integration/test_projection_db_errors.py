"""Read-model database errors that no retry can fix stop the runner with a clear error
instead of retrying forever."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from eventsource.errors import ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner
from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.testing.seed import seed_events
from examples.bank.projections import AccountBalances, AccountBalancesPerEvent, sample_history

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "read_model.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def projection_name(unique_name: str, database_url: str) -> Iterator[str]:
    name = "e_" + unique_name[-8:]
    yield name
    engine = create_read_model_engine(database_url)  # the server may be shared: clean up
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
        for system in (checkpoints_table, projections_table):
            conn.execute(system.delete().where(system.c.projection == name))
    engine.dispose()


@pytest.mark.parametrize("projection_cls", [AccountBalances, AccountBalancesPerEvent])
def test_a_dropped_read_model_table_stops_the_runner_with_a_clear_error(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
    projection_cls: type[AccountBalances],
) -> None:
    topic = create_topic(partitions=2)
    seed_events(kafka_settings, topic, sample_history(accounts=5, events=50, seed=2))
    projection = projection_cls(name=projection_name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, database_url, batch_size=20) as runner:
        with runner.engine.begin() as conn:  # someone drops the table under the runner
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{projection_name}_accounts"')
            conn.exec_driver_sql(f'DROP TABLE "{projection.accounts.name}"')
        with pytest.raises(ProjectionError, match="no retry can fix") as caught:
            runner.run_until_caught_up(timeout=60)
        message = str(caught.value)
        assert repr(projection_name) in message and "restart" in message
        assert isinstance(caught.value.__cause__, DBAPIError)  # the database's own error
        assert runner.status()[0].checkpoint == 0  # nothing was applied or skipped
