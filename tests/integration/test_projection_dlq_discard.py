"""``dlq discard`` and ``dlq unpark`` (issue 12, defect 9): dead letters that can never be
applied are given up, recorded in the read-model database, and replay never applies them."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, DeadLetterPolicy, ProjectionRunner, on
from eventsource.projection.deadletter import (
    SqlParkingLot,
    discard_dead_letters,
    list_dead_letters,
    replay_dead_letters,
    unpark_aggregates,
)
from eventsource.projection.store import create_read_model_engine
from eventsource.testing.seed import SeedEvent, create_topic, seed_events
from examples.bank.domain import AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, cents

pytestmark = pytest.mark.integration

POISON = Decimal(666)


class Refusing(AccountBalances):
    retries = 0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if event.amount == POISON:
            raise RuntimeError("refusing 666")
        self._write(ctx, cents(event.amount))


class RefusingSkip(Refusing):
    policy = DeadLetterPolicy.SKIP


class RefusingPark(Refusing):
    policy = DeadLetterPolicy.PARK


class FixedSkip(AccountBalances):
    policy = DeadLetterPolicy.SKIP


class FixedPark(AccountBalances):
    policy = DeadLetterPolicy.PARK


def opened(account: str) -> SeedEvent:
    return SeedEvent(account, AccountOpened(owner=account))


def deposit(account: str, amount: int | Decimal) -> SeedEvent:
    return SeedEvent(account, MoneyDeposited(amount=Decimal(amount)))


def balances(database: str, projection: AccountBalances) -> dict[str, int]:
    engine = create_read_model_engine(database)
    try:
        with engine.connect() as conn:
            table = projection.accounts
            rows = conn.execute(select(table.c.account_id, table.c.balance_cents))
            return {account: int(balance) for account, balance in rows}
    finally:
        engine.dispose()


def catch_up(projection: AccountBalances, settings: KafkaSettings, database: str) -> int:
    group = f"{projection.name}.{uuid.uuid4().hex[:6]}"
    with ProjectionRunner(projection, settings, database, group_id=group) as runner:
        return runner.run_until_caught_up(timeout=60).dead_lettered


@pytest.fixture
def topic(kafka_settings: KafkaSettings, unique_name: str) -> str:
    name = f"{unique_name}.events"
    create_topic(kafka_settings, name, partitions=1)
    return name


def test_discarded_dead_letters_are_never_replayed(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    seed_events(
        kafka_settings,
        topic,
        [opened("a"), deposit("a", 5), deposit("a", POISON), opened("b"), deposit("b", POISON)],
    )
    name, database = f"d{uuid.uuid4().hex[:10]}", str(tmp_path / "rm.db")
    assert catch_up(RefusingSkip(name=name, topics=[topic]), kafka_settings, database) == 2

    fixed = FixedSkip(name=name, topics=[topic])
    discarded = discard_dead_letters(
        fixed, kafka_settings, database, aggregate_id="a", reason="compensated"
    )
    assert [p.offset for p in discarded.discarded] == [2]
    again = discard_dead_letters(fixed, kafka_settings, database, aggregate_id="a")
    assert (again.discarded, again.settled_before) == ([], 1)

    result = replay_dead_letters(fixed, kafka_settings, database)
    assert (result.applied, result.discarded) == (1, 1)
    assert balances(database, fixed) == {"a": 500, "b": 66600}
    letters = list_dead_letters(kafka_settings, name)
    assert len(letters) == 2  # still on the topic, for the record


def test_a_discard_by_dlq_offset_range_takes_exactly_that_range(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    seed_events(
        kafka_settings,
        topic,
        [opened("a"), *(deposit("a", POISON) for _ in range(4))],
    )
    name, database = f"r{uuid.uuid4().hex[:10]}", str(tmp_path / "rm.db")
    assert catch_up(RefusingSkip(name=name, topics=[topic]), kafka_settings, database) == 4
    fixed = FixedSkip(name=name, topics=[topic])
    result = discard_dead_letters(fixed, kafka_settings, database, dlq_offsets=(0, 1, 2))
    assert [p.offset for p in result.discarded] == [2, 3]  # DLQ 1..2 hold sources 2..3
    replayed = replay_dead_letters(fixed, kafka_settings, database)
    assert (replayed.applied, replayed.discarded) == (2, 2)
    assert balances(database, fixed) == {"a": 2 * 66600}


def test_unpark_discards_the_pending_dead_letters_and_lets_new_events_through(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    seed_events(
        kafka_settings,
        topic,
        [opened("a"), deposit("a", POISON), deposit("a", 7), opened("b"), deposit("b", 1)],
    )
    name, database = f"u{uuid.uuid4().hex[:10]}", str(tmp_path / "rm.db")
    refusing = RefusingPark(name=name, topics=[topic])
    assert catch_up(refusing, kafka_settings, database) == 2  # 666 failed, 7 held back
    engine = create_read_model_engine(database)
    lot = SqlParkingLot(name, 1)
    with engine.connect() as conn:
        assert lot.load(conn) == {(topic, "a")}

    fixed = FixedPark(name=name, topics=[topic])
    result = unpark_aggregates(fixed, kafka_settings, database, aggregate_ids=["a"])
    assert result.unparked == [(topic, "a")]
    assert [p.offset for p in result.discarded] == [1, 2]
    with engine.connect() as conn:
        assert lot.load(conn) == set()
    engine.dispose()

    seed_events(kafka_settings, topic, [deposit("a", 3)])
    assert catch_up(fixed, kafka_settings, database) == 0  # no longer diverted
    replayed = replay_dead_letters(fixed, kafka_settings, database)
    assert (replayed.applied, replayed.discarded) == (0, 2)
    assert balances(database, fixed) == {"a": 300, "b": 100}


def test_discard_and_unpark_refuse_to_run_without_a_selection(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    projection = FixedPark(name="nothing_selected", topics=["t.events"])
    database = str(tmp_path / "rm.db")
    with pytest.raises(ConfigurationError, match="needs a selection"):
        discard_dead_letters(projection, kafka_settings, database)
    with pytest.raises(ConfigurationError, match="needs a selection"):
        unpark_aggregates(projection, kafka_settings, database)
    with pytest.raises(ConfigurationError, match="offset range 5-2"):
        discard_dead_letters(projection, kafka_settings, database, dlq_offsets=(0, 5, 2))
