"""Read-model database errors that no retry can fix stop the runner with a clear error
instead of retrying forever."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from eventsource.errors import ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, DeadLetterPolicy, ProjectionRunner, on
from eventsource.projection.deadletter import list_dead_letters
from eventsource.testing.seed import SeedEvent, seed_events
from examples.bank.domain import AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, AccountBalancesPerEvent, sample_history
from tests.integration.read_model_db import dropped_afterwards

pytestmark = pytest.mark.integration


@pytest.fixture
def projection_name(unique_name: str, database_url: str) -> Iterator[str]:
    with dropped_afterwards(database_url, "e_" + unique_name[-8:]) as name:  # may be shared
        yield name


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


class MalformedJsonOnTheSeventh(AccountBalances):
    """Feeds every 7th deposit's owner text to SQLite's json(): the record's own bad data."""

    policy = DeadLetterPolicy.SKIP
    retries = 0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if ctx.meta.version % 7 == 0:
            ctx.execute(text("SELECT json(:doc)"), {"doc": "{not json"})
        super()._deposited(event, ctx)


def test_a_database_error_only_one_record_triggers_dead_letters_that_record_on_sqlite(
    kafka_settings: KafkaSettings, create_topic: Callable[..., str], tmp_path: Path
) -> None:
    # Before: SQLite's "malformed JSON" counted as transient; the batch was retried until
    # max_db_outage_s and SKIP never saw the record.
    topic = create_topic(partitions=1)
    history = [
        SeedEvent("acc", AccountOpened(owner="ann")),
        *(SeedEvent("acc", MoneyDeposited(amount=Decimal(1))) for _ in range(9)),
    ]
    seed_events(kafka_settings, topic, history)
    name = f"j{uuid.uuid4().hex[:10]}"
    projection = MalformedJsonOnTheSeventh(name=name, topics=[topic])
    with ProjectionRunner(
        projection, kafka_settings, str(tmp_path / "rm.db"), max_db_outage_s=20
    ) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        assert stats.dead_lettered == 1
        with runner.engine.connect() as conn:
            row = conn.execute(select(projection.accounts.c.balance_cents)).one()
        assert row.balance_cents == 800  # 9 deposits of 1.00, the 7th event dead-lettered
    letters = list_dead_letters(kafka_settings, name)
    assert [(r.source.offset, r.stage) for r in letters] == [(6, "handler")]
    assert "malformed JSON" in letters[0].exception_message
