"""``dlq replay`` classifies a failing record exactly as the runner does (issue 12: the
two copies of "apply one record" had drifted apart)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from eventsource.errors import DecodeError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, DeadLetterPolicy, ProjectionRunner, on
from eventsource.projection.deadletter import list_dead_letters, replay_dead_letters
from eventsource.testing.seed import SeedEvent, create_topic, seed_events
from examples.bank.domain import AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, cents

pytestmark = pytest.mark.integration


class Refusing(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if event.amount == Decimal(666):
            raise RuntimeError("refusing 666")
        self._write(ctx, cents(event.amount))


class DatabaseLocked(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 2
    retry_backoff_s = 0.0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        raise OperationalError("UPDATE", {}, Exception("database is locked"))


class BadHeader(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 2
    retry_backoff_s = 0.0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        raise DecodeError("ce_time 'noon' is not an ISO 8601 time")


@pytest.fixture
def one_dead_letter(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> tuple[str, str]:
    topic = f"{unique_name}.events"
    create_topic(kafka_settings, topic, partitions=1)
    seed_events(
        kafka_settings,
        topic,
        [
            SeedEvent("a", AccountOpened(owner="a")),
            SeedEvent("a", MoneyDeposited(amount=Decimal(666))),
        ],
    )
    name, database = f"x{uuid.uuid4().hex[:10]}", str(tmp_path / "rm.db")
    with ProjectionRunner(Refusing(name=name, topics=[topic]), kafka_settings, database) as runner:
        assert runner.run_until_caught_up(timeout=60).dead_lettered == 1
    return name, database


def test_a_database_error_during_dlq_replay_is_raised_not_dead_lettered_again(
    kafka_settings: KafkaSettings, one_dead_letter: tuple[str, str], unique_name: str
) -> None:
    name, database = one_dead_letter
    projection = DatabaseLocked(name=name, topics=[f"{unique_name}.events"])
    with pytest.raises(OperationalError, match="database is locked"):
        replay_dead_letters(projection, kafka_settings, database)
    assert len(list_dead_letters(kafka_settings, name)) == 1  # nothing written again


def test_a_decode_error_raised_in_a_handler_during_dlq_replay_is_stage_decode(
    kafka_settings: KafkaSettings, one_dead_letter: tuple[str, str], unique_name: str
) -> None:
    name, database = one_dead_letter
    projection = BadHeader(name=name, topics=[f"{unique_name}.events"])
    result = replay_dead_letters(projection, kafka_settings, database)
    assert result.dead_lettered_again == 1
    again = list_dead_letters(kafka_settings, name)[-1]
    assert (again.stage, again.exception_class) == ("decode", "eventsource.errors.DecodeError")
