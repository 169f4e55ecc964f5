"""What the read-model engine does when a connection goes away under it: one dropped while
idle in the pool is found dead by the next checkout's pre-ping and replaced (for the runner
as for any reader); one dropped while it reads checkpoints is retried by whoever reads
(catching up, status, waiting for positions); Ctrl-C during a query stays a
KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from eventsource.domain import Position
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    Context,
    ProjectionRunner,
    on,
    projection_status,
    wait_for_positions,
)
from eventsource.projection.replay import ReplayResult, replay
from eventsource.projection.store import create_read_model_engine
from eventsource.testing.seed import seed_events
from examples.bank.domain import MoneyDeposited
from examples.bank.projections import AccountBalances, sample_history
from tests.integration.read_model_db import (
    ErrorsSeen,
    balances,
    dropped_while_reading_checkpoints,
    dropped_while_sleeping,
    folded_balances,
    named,
    terminate,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_an_engine_reconnects_when_its_idle_pooled_connection_was_dropped(
    postgres_url: str, unique_name: str
) -> None:
    engine = create_read_model_engine(named(postgres_url, unique_name))
    admin = create_read_model_engine(postgres_url)
    try:
        with engine.connect() as conn:  # the connection goes back to the pool, idle
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert terminate(admin, unique_name) == 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2
    finally:
        engine.dispose()
        admin.dispose()


Drop = Callable[[ProjectionRunner, Engine, ErrorsSeen], None]


def _applies_all_of_a_history_around(
    drop: Drop, settings: KafkaSettings, topic: str, postgres_url: str, name: str
) -> None:
    """Apply half a history, ``drop`` the runner's connections, apply the rest: the read
    model must be the fold of it all."""
    history = sample_history(accounts=10, events=400, seed=5)
    projection = AccountBalances(name=name, topics=[topic])
    admin = create_read_model_engine(postgres_url)
    errors = ErrorsSeen()
    try:
        with ProjectionRunner(
            projection, settings, named(postgres_url, name), batch_size=50, listener=errors
        ) as runner:
            after = seed_events(settings, topic, history[:200])
            runner.run_until_caught_up(60, after=after)
            drop(runner, admin, errors)
            after = seed_events(settings, topic, history[200:])
            runner.run_until_caught_up(60, after=after)
        got = balances(admin, projection)
    finally:
        admin.dispose()
    assert got == folded_balances(history)


def test_a_runner_whose_idle_connection_was_dropped_goes_on_applying(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    postgres_url: str,
    pg_projection_name: str,
) -> None:
    def drop_idle(runner: ProjectionRunner, admin: Engine, _: ErrorsSeen) -> None:
        assert terminate(admin, pg_projection_name) >= 1  # the runner's pooled connection
        runner.run_until_caught_up(60)  # nothing new: checks its checkpoints

    _applies_all_of_a_history_around(
        drop_idle, kafka_settings, create_topic(partitions=2), postgres_url, pg_projection_name
    )


def test_checkpoint_reads_ride_out_a_connection_dropped_mid_read(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    postgres_url: str,
    pg_projection_name: str,
) -> None:
    """Catching up, the runner's status, status from a URL and waiting for positions each
    lose their connection while they read checkpoints, and retry."""
    topic = create_topic(partitions=2)

    def drop_mid_read(runner: ProjectionRunner, admin: Engine, errors: ErrorsSeen) -> None:
        def drop_while(call: Callable[[], Any]) -> Any:
            return dropped_while_reading_checkpoints(admin, pg_projection_name, call)

        p, url = runner.projection, runner.database_url
        runner.run_until_caught_up(60)  # settled: the next call only reads checkpoints
        drop_while(runner.run_until_caught_up)
        assert errors.seen, "the runner never felt the dropped connection"
        status = drop_while(runner.status)
        assert sum(s.checkpoint for s in status) == sum(s.end_offset for s in status)
        status = drop_while(lambda: projection_status(p, kafka_settings, url))
        assert sum(s.lag for s in status) == 0
        ends = [Position(s.topic, s.partition, s.end_offset - 1) for s in status]
        drop_while(lambda: wait_for_positions(p, url, ends, 60))

    _applies_all_of_a_history_around(
        drop_mid_read, kafka_settings, topic, postgres_url, pg_projection_name
    )


class SleepsOnce(AccountBalances):
    """The first deposit it applies after ``sleeps`` is set waits in the database."""

    sleeps: ClassVar[list[int]] = []

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if self.sleeps:
            self.sleeps.pop()
            ctx.execute(text("SELECT pg_sleep(60)"))
        super()._deposited(event, ctx)


def test_a_replay_rides_out_connections_dropped_while_it_resets_and_applies(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    postgres_url: str,
    pg_projection_name: str,
) -> None:
    topic = create_topic(partitions=2)
    history = sample_history(accounts=10, events=300, seed=7)
    seed_events(kafka_settings, topic, history)
    projection = SleepsOnce(name=pg_projection_name, topics=[topic])
    url = named(postgres_url, pg_projection_name)
    admin = create_read_model_engine(postgres_url)

    def replay_all() -> ReplayResult:
        return replay(projection, kafka_settings, url, batch_size=50, timeout=120)

    try:
        replay_all()  # the tables exist: the next replay's reset reads checkpoints first
        reset = dropped_while_reading_checkpoints(admin, pg_projection_name, replay_all)
        SleepsOnce.sleeps[:] = [1]
        applied = dropped_while_sleeping(admin, pg_projection_name, replay_all)
        got = balances(admin, projection)
    finally:
        admin.dispose()
    assert reset.events == applied.events == len(history)
    assert got == folded_balances(history)


class _InterruptTheQuery(threading.Thread):
    """Sends SIGINT once the main thread's query runs: PostgreSQL shows it active and the
    main thread is inside psycopg's wait for its result. Polls until then (or until told
    to stop); a failed look (a busy server refusing a connection) is retried, not fatal."""

    def __init__(self, admin: Engine, application_name: str) -> None:
        super().__init__(name="interrupt-the-query", daemon=True)
        self.admin, self.application_name = admin, application_name
        self.main = threading.main_thread().ident
        self.sent, self.stop = threading.Event(), threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stop.is_set():
            if self._query_runs() and self._main_waits_for_it():
                os.kill(os.getpid(), signal.SIGINT)
                self.sent.set()
                return
            self.stop.wait(0.02)

    def why_not_sent(self) -> str:
        return f"the query was never seen running; last failed look: {self.errors}"

    def _query_runs(self) -> bool:
        try:
            with self.admin.connect() as conn:
                return bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            ":name AND state = 'active' AND query LIKE '%pg_sleep%'"
                        ),
                        {"name": self.application_name},
                    ).scalar_one()
                )
        except DBAPIError as exc:
            self.errors[:] = [exc]  # the last one, reported if the signal was never sent
            return False

    def _main_waits_for_it(self) -> bool:
        frame = sys._current_frames().get(self.main or 0)
        while frame is not None:
            if frame.f_code is _PSYCOPG_WAIT:
                return True
            frame = frame.f_back
        return False


_PSYCOPG_WAIT = psycopg.Connection.wait.__code__
_PSYCOPG_EXECUTE = psycopg.Cursor.execute.__code__


def test_ctrl_c_during_a_query_stays_a_keyboard_interrupt(
    postgres_url: str, unique_name: str
) -> None:
    """Ctrl-C is what SIGINT's default Python handler makes of it: installed here, since a
    run started in the background by a non-interactive shell inherits SIGINT ignored (then
    the signal is lost and the query runs to its end). Short queries are repeated until the
    signal was sent, so a busy machine delays the test instead of failing it."""
    engine = create_read_model_engine(named(postgres_url, unique_name))
    admin = create_read_model_engine(postgres_url)
    interrupter = _InterruptTheQuery(admin, unique_name)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with engine.connect() as conn:
            interrupter.start()
            try:
                with pytest.raises(KeyboardInterrupt) as raised:
                    for _ in range(12):  # a minute at most
                        conn.execute(text("SELECT pg_sleep(5)"))
                        if interrupter.sent.is_set():
                            break
                    assert interrupter.sent.is_set(), interrupter.why_not_sent()
            finally:
                interrupter.stop.set()
    finally:
        signal.signal(signal.SIGINT, previous)
        interrupter.join(60)
        engine.dispose()
        admin.dispose()
    # psycopg cuts its own frames below Cursor.execute, the wait among them
    assert raised.traceback[-1].frame.code.raw is _PSYCOPG_EXECUTE, (
        f"the KeyboardInterrupt came from outside the query: {raised.traceback[-1]}"
    )
