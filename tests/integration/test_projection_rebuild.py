"""Blue/green rebuild on a real broker: version 2 fills its own tables while version 1
serves, the swap is atomic for concurrent readers, and dropping the old version is explicit."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, create_engine, text

from eventsource.errors import ConfigurationError, ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    Context,
    ProjectionRunner,
    create_read_model_engine,
    table,
    wait_for_positions,
)
from eventsource.projection.rebuild import drop_version, rebuild, swap_version
from eventsource.projection.replay import replay
from eventsource.projection.store import live_version
from eventsource.testing.seed import SeedEvent, seed_events
from examples.bank.domain import MoneyDeposited
from examples.bank.projections import AccountBalances, sample_history

pytestmark = pytest.mark.integration

Rows = list[tuple[Any, ...]]


class BalancesV2(AccountBalances):
    """Version 2 of the model: the same fold plus a column saying which model wrote it."""

    version = 2
    accounts = table(
        "accounts",
        *(c._copy() for c in AccountBalances.accounts.template.columns),
        Column("model", Integer, nullable=False),
    )

    def _write(
        self, ctx: Context, delta_cents: int, owner: str | None = None, closed: bool = False
    ) -> None:
        ctx.upsert(
            self.accounts,
            {
                "account_id": ctx.meta.aggregate_id,
                "owner": owner,
                "balance_cents": delta_cents,
                "events": 1,
                "version": ctx.meta.version,
                "closed": closed,
                "model": 2,
            },
            key=["account_id"],
            increment=["balance_cents", "events"],
            coalesce=["owner"],
        )


@pytest.fixture
def reader(database_url: str) -> Iterator[Engine]:
    """A plain engine, as a query service would have (no write lock on SQLite reads)."""
    eng = create_engine(database_url)
    yield eng
    eng.dispose()


def query(engine: Engine, relation: str) -> Rows:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {relation} ORDER BY 1"))]


def test_a_reader_never_sees_an_empty_or_half_built_model_during_rebuild_and_swap(
    kafka_settings: KafkaSettings, topic: str, database_url: str, reader: Engine
) -> None:
    name = f"b{uuid.uuid4().hex[:12]}"
    history = sample_history(accounts=60, events=3000, seed=11)
    seed_events(kafka_settings, topic, history, transaction_size=500)
    v1 = AccountBalances(name=name, topics=[topic])
    replay(v1, kafka_settings, database_url)
    view = v1.view_name("accounts")
    model_v1 = query(reader, view)
    model_v2 = [(*row, 2) for row in model_v1]
    assert len(model_v1) == 60

    done = threading.Event()
    seen = {"v1": 0, "v2": 0}
    wrong: list[Any] = []

    def read_in_a_tight_loop() -> None:
        give_up = time.monotonic() + 120  # a broken swap fails the test, never hangs it
        while (not done.is_set() or seen["v2"] < 5) and time.monotonic() < give_up:
            try:
                rows = query(reader, view)
            except Exception as exc:  # any error is a failure of the swap
                wrong.append(exc)
                return
            if rows == model_v1:
                seen["v1"] += 1
            elif rows == model_v2:
                seen["v2"] += 1
            else:
                wrong.append(rows[:3] if rows else "empty")
                return

    thread = threading.Thread(target=read_in_a_tight_loop, daemon=True)
    thread.start()
    try:
        result = rebuild(
            BalancesV2(name=name, topics=[topic]), kafka_settings, database_url, batch_size=200
        )
    finally:
        done.set()
        thread.join(timeout=60)

    assert wrong == []
    assert seen["v1"] > 0 and seen["v2"] >= 5
    assert (result.swapped, result.previous_version, result.applied) == (True, 1, len(history))
    with reader.connect() as conn:
        assert live_version(conn, name) == 2
    assert query(reader, v1.physical_name("accounts", 1)) == model_v1  # old version still there


def test_dropping_a_version_is_explicit_and_the_live_one_cannot_be_dropped(
    kafka_settings: KafkaSettings, topic: str, database_url: str, reader: Engine
) -> None:
    name = f"b{uuid.uuid4().hex[:12]}"
    seed_events(kafka_settings, topic, sample_history(accounts=5, events=40, seed=1))
    v1 = AccountBalances(name=name, topics=[topic])
    v2 = BalancesV2(name=name, topics=[topic])
    replay(v1, kafka_settings, database_url)
    rebuild(v2, kafka_settings, database_url)

    with pytest.raises(ConfigurationError, match="is live"):
        drop_version(v2, database_url, 2)
    assert drop_version(v2, database_url, 1) == [v1.physical_name("accounts", 1)]

    assert len(query(reader, v2.view_name("accounts"))) == 5
    with pytest.raises(Exception, match=v1.physical_name("accounts", 1)):
        query(reader, v1.physical_name("accounts", 1))


def test_a_version_behind_the_live_one_is_not_swapped(
    kafka_settings: KafkaSettings, topic: str, database_url: str, reader: Engine
) -> None:
    name = f"b{uuid.uuid4().hex[:12]}"
    seed_events(kafka_settings, topic, sample_history(accounts=5, events=40, seed=2))
    v1 = AccountBalances(name=name, topics=[topic])
    v2 = BalancesV2(name=name, topics=[topic])
    replay(v1, kafka_settings, database_url)
    rebuild(v2, kafka_settings, database_url, swap=False)
    seed_events(kafka_settings, topic, [SeedEvent("acc-00000", MoneyDeposited(amount=5))])
    replay(v1, kafka_settings, database_url)  # version 1 moves on; version 2 does not

    with pytest.raises(ProjectionError, match="behind live version 1"):
        swap_version(v2, database_url)
    with reader.connect() as conn:
        assert live_version(conn, name) == 1

    result = rebuild(v2, kafka_settings, database_url)  # catches up, then swaps
    assert result.swapped
    assert query(reader, v2.view_name("accounts")) == [
        (*row, 2) for row in query(reader, v1.physical_name("accounts", 1))
    ]


def test_rebuilding_the_live_version_is_refused(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'read.db'}"
    name = f"b{uuid.uuid4().hex[:12]}"
    seed_events(kafka_settings, topic, sample_history(accounts=3, events=10, seed=3))
    v1 = AccountBalances(name=name, topics=[topic])
    replay(v1, kafka_settings, database_url)
    with pytest.raises(ConfigurationError, match="already live"):
        rebuild(v1, kafka_settings, database_url)


def test_a_first_build_with_nothing_live_becomes_live_at_once(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'read.db'}"
    name = f"b{uuid.uuid4().hex[:12]}"
    seed_events(kafka_settings, topic, sample_history(accounts=3, events=10, seed=4))
    result = rebuild(BalancesV2(name=name, topics=[topic]), kafka_settings, database_url)
    assert (result.swapped, result.previous_version, result.applied) == (True, None, 10)
    engine = create_read_model_engine(database_url)
    try:
        with engine.connect() as conn:
            assert live_version(conn, name) == 2
    finally:
        engine.dispose()


def test_rebuild_catches_up_with_a_live_version_that_keeps_moving_and_never_goes_back(
    kafka_settings: KafkaSettings, topic: str, database_url: str, reader: Engine
) -> None:
    name = f"b{uuid.uuid4().hex[:12]}"
    history = sample_history(accounts=30, events=1500, seed=12)
    positions = seed_events(kafka_settings, topic, history, transaction_size=500)
    v1 = AccountBalances(name=name, topics=[topic])
    v2 = BalancesV2(name=name, topics=[topic])
    view = v1.view_name("accounts")
    totals = f"SELECT count(*), sum(balance_cents), sum(events) FROM {view}"
    stop_writing, stop_reading, stop_v1 = threading.Event(), threading.Event(), threading.Event()
    appended: list[SeedEvent] = []
    observed: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def append_while_rebuilding() -> None:
        while not stop_writing.is_set():
            item = SeedEvent(f"acc-{len(appended) % 30:05d}", MoneyDeposited(amount=1))
            positions.extend(seed_events(kafka_settings, topic, [item]))
            appended.append(item)
            stop_writing.wait(0.02)

    def read_totals() -> None:
        try:
            while not stop_reading.is_set():
                with reader.connect() as conn:
                    count, _, events = conn.execute(text(totals)).one()
                observed.append((int(count), int(events or 0)))
        except BaseException as exc:
            errors.append(exc)

    with ProjectionRunner(v1, kafka_settings, database_url, batch_size=100) as runner_v1:
        runner_v1.run_until_caught_up(timeout=60)
        threads = [
            threading.Thread(target=runner_v1.run, args=(stop_v1,), daemon=True),
            threading.Thread(target=append_while_rebuilding, daemon=True),
            threading.Thread(target=read_totals, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            result = rebuild(v2, kafka_settings, database_url, batch_size=100, max_rounds=30)
            stop_writing.set()
            threads[1].join(timeout=60)
            wait_for_positions(v1, database_url, positions, timeout=60)
            stop_v1.set()
            threads[0].join(timeout=60)
            with ProjectionRunner(v2, kafka_settings, database_url) as runner_v2:
                runner_v2.run_until_caught_up(timeout=60)
        finally:
            for event in (stop_writing, stop_v1, stop_reading):
                event.set()
            for thread in threads:
                thread.join(timeout=60)

    assert errors == []
    assert result.swapped and appended
    assert all(count == 30 for count, _ in observed)  # never empty, never partial
    events_seen = [events for _, events in observed]
    assert events_seen == sorted(events_seen)  # never an older model, not even at the swap
    assert query(reader, view) == [
        (*row, 2) for row in query(reader, v1.physical_name("accounts", 1))
    ]
    with reader.connect() as conn:
        assert conn.execute(text(totals)).one()[2] == len(history) + len(appended)
