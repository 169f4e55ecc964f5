"""Replay on a real broker into SQLite and PostgreSQL: deterministic, bounded, resumable."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from eventsource.domain import Position
from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner, create_read_model_engine
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.replay import ReplayProgress, replay
from eventsource.testing.seed import SeedEvent, seed_events
from examples.bank.domain import AccountClosed, AccountOpened, MoneyDeposited, MoneyWithdrawn
from examples.bank.projections import AccountBalances, cents, sample_history

pytestmark = pytest.mark.integration

Row = tuple[Any, ...]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_read_model_engine(database_url)
    yield eng
    eng.dispose()


def balances(topic: str) -> AccountBalances:
    return AccountBalances(name=f"b{uuid.uuid4().hex[:12]}", topics=[topic])


def read_model(engine: Engine, projection: AccountBalances) -> list[Row]:
    """The version's rows, ordered: the read-model checksum."""
    table = projection.tables["accounts"]
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.account_id)).all()
    return [tuple(r) for r in rows]


def expected(items: Sequence[SeedEvent], positions: Sequence[Position], keep: Any) -> list[Row]:
    """The fold AccountBalances must hold after applying the records ``keep`` selects."""
    versions: dict[str, int] = {}
    rows: dict[str, list[Any]] = {}
    for item, pos in zip(items, positions, strict=True):
        versions[item.aggregate_id] = versions.get(item.aggregate_id, 0) + 1
        if not keep(pos):
            continue
        row = rows.setdefault(item.aggregate_id, [item.aggregate_id, None, 0, 0, 0, False])
        event = item.event
        if isinstance(event, AccountOpened):
            row[1] = event.owner
        elif isinstance(event, MoneyDeposited):
            row[2] += cents(event.amount)
        elif isinstance(event, MoneyWithdrawn):
            row[2] -= cents(event.amount)
        row[5] = isinstance(event, AccountClosed)
        row[3] += 1
        row[4] = versions[item.aggregate_id]
    return [tuple(rows[k]) for k in sorted(rows)]


def test_replaying_twice_from_the_beginning_gives_an_identical_read_model(
    kafka_settings: KafkaSettings, topic: str, database_url: str, engine: Engine
) -> None:
    history = sample_history(accounts=40, events=600, seed=7)
    positions = seed_events(kafka_settings, topic, history, transaction_size=100)
    projection = balances(topic)
    seen: list[ReplayProgress] = []

    first = replay(projection, kafka_settings, database_url, batch_size=128, progress=seen.append)
    checksum_1 = read_model(engine, projection)
    second = replay(projection, kafka_settings, database_url, batch_size=128)
    checksum_2 = read_model(engine, projection)

    assert checksum_1 == checksum_2 == expected(history, positions, lambda _: True)
    assert first.applied == second.applied == len(history)
    assert seen[-1].lag_left == 0
    assert seen[-1].events_done == seen[-1].events_total
    assert [p.events_done for p in seen] == sorted(p.events_done for p in seen)


def test_replay_from_an_offset_folds_only_the_later_records(
    kafka_settings: KafkaSettings, topic: str, database_url: str, engine: Engine
) -> None:
    history = sample_history(accounts=20, events=300, seed=3)
    positions = seed_events(kafka_settings, topic, history, transaction_size=300)
    projection = balances(topic)

    result = replay(projection, kafka_settings, database_url, from_offset=50)

    assert read_model(engine, projection) == expected(history, positions, lambda p: p.offset >= 50)
    assert set(result.start.values()) == {50}


def test_replay_up_to_an_offset_stops_there_and_leaves_the_checkpoints_at_the_bound(
    kafka_settings: KafkaSettings, topic: str, database_url: str, engine: Engine
) -> None:
    history = sample_history(accounts=20, events=300, seed=4)
    positions = seed_events(kafka_settings, topic, history, transaction_size=50)
    projection = balances(topic)
    bound = {(topic, 0): 30, (topic, 2): 60}

    result = replay(projection, kafka_settings, database_url, to_offset=bound)

    def keep(p: Position) -> bool:
        return p.offset <= bound.get((p.topic, p.partition), 10**9)

    assert read_model(engine, projection) == expected(history, positions, keep)
    with engine.connect() as conn:
        stored = read_checkpoints(conn, projection.name, projection.version)
    assert stored[(topic, 0)] == 31
    assert stored[(topic, 2)] == 61
    assert stored == result.stop


def test_replay_between_two_timestamps_folds_the_records_written_in_between(
    kafka_settings: KafkaSettings, topic: str, database_url: str, engine: Engine
) -> None:
    early = [SeedEvent(f"acc-{i}", AccountOpened(owner=f"o{i}")) for i in range(10)]
    middle = [SeedEvent(f"acc-{i}", MoneyDeposited(amount=i + 1)) for i in range(10)]
    late = [SeedEvent(f"acc-{i}", MoneyWithdrawn(amount=1)) for i in range(10)]
    seed_events(kafka_settings, topic, early)
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    seed_events(kafka_settings, topic, middle)
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.05)
    seed_events(kafka_settings, topic, late)
    projection = balances(topic)

    replay(projection, kafka_settings, database_url, from_time=since, to_time=until)

    rows = read_model(engine, projection)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == sorted(
        (f"acc-{i}", None, (i + 1) * 100, 1) for i in range(10)
    )


def test_replay_of_a_projection_whose_topic_does_not_exist_says_so(
    kafka_settings: KafkaSettings, unique_name: str, database_url: str
) -> None:
    projection = balances(f"{unique_name}.missing")
    with pytest.raises(ConfigurationError, match="does not exist"):
        replay(projection, kafka_settings, database_url, timeout=10)


def test_replay_in_place_is_refused_while_the_versions_runner_is_running(
    kafka_settings: KafkaSettings, topic: str, database_url: str
) -> None:
    seed_events(kafka_settings, topic, sample_history(accounts=3, events=10, seed=5))
    projection = balances(topic)
    stop = threading.Event()
    with ProjectionRunner(projection, kafka_settings, database_url) as runner:
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not runner.assignment and time.monotonic() < deadline:
                time.sleep(0.05)
            with pytest.raises(ConfigurationError, match="is running"):
                replay(projection, kafka_settings, database_url)
        finally:
            stop.set()
            thread.join(timeout=30)
    replay(projection, kafka_settings, database_url)  # stopped: allowed


def test_a_replay_after_named_positions_includes_them(
    kafka_settings: KafkaSettings, topic: str, database_url: str, engine: Engine
) -> None:
    history = sample_history(accounts=10, events=200, seed=8)
    positions = seed_events(kafka_settings, topic, history, transaction_size=200)
    projection = balances(topic)

    result = replay(projection, kafka_settings, database_url, after=positions)

    assert read_model(engine, projection) == expected(history, positions, lambda p: True)
    assert all(result.stop[(p.topic, p.partition)] > p.offset for p in positions)
