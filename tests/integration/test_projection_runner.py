"""The projection runner on the real broker, into SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from eventsource.domain import Position
from eventsource.errors import ProjectionError, ProjectionStoppedError, WaitTimeoutError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    Context,
    NullListener,
    Projection,
    ProjectionRunner,
    on,
    set_live_version,
    wait_for_positions,
)
from eventsource.projection.checkpoints import checkpoints_table, read_checkpoints
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.store.kafka import KafkaEventStore
from eventsource.testing.seed import SeedEvent, fold, seed_events
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, AccountBalancesPerEvent, sample_history

pytestmark = pytest.mark.integration


@pytest.fixture
def projection_name(unique_name: str) -> str:
    return "p_" + unique_name[-8:]


def read_accounts(
    engine: Engine, projection: AccountBalances
) -> dict[str, tuple[str | None, int, int, bool]]:
    with engine.connect() as conn:
        return {
            r.account_id: (r.owner, r.balance_cents, r.events, r.closed)
            for r in conn.execute(select(projection.accounts))
        }


def expected_accounts(history: list[SeedEvent]) -> dict[str, tuple[str | None, int, int, bool]]:
    return {
        account_id: (a.owner, int(a.balance * 100), a.version, a.closed)
        for account_id, a in fold(Account, history).items()
    }


@pytest.mark.parametrize("projection_cls", [AccountBalances, AccountBalancesPerEvent])
def test_the_read_model_equals_the_in_memory_fold(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
    projection_cls: type[AccountBalances],
) -> None:
    topic = create_topic(partitions=3)
    history = sample_history(accounts=200, events=5000, seed=7)
    seed_events(kafka_settings, topic, history)
    projection = projection_cls(name=projection_name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, database_url, batch_size=700) as runner:
        stats = runner.run_until_caught_up(timeout=120)
        assert stats.applied == 5000 and stats.duplicates == 0
        assert read_accounts(runner.engine, projection) == expected_accounts(history)
        status = runner.status()
        assert sum(s.end_offset for s in status) >= 5000
        assert all(s.lag == 0 and s.checkpoint == s.end_offset for s in status)


def test_a_restarted_runner_continues_from_its_checkpoints(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=2)
    history = sample_history(accounts=30, events=1200, seed=3)
    seed_events(kafka_settings, topic, history[:700])
    projection = AccountBalances(name=projection_name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, database_url, batch_size=100) as runner:
        assert runner.run_until_caught_up(timeout=60).applied == 700
    seed_events(kafka_settings, topic, history[700:])
    with ProjectionRunner(projection, kafka_settings, database_url, batch_size=100) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        assert stats.applied == 500
        assert read_accounts(runner.engine, projection) == expected_accounts(history)


def test_events_of_aborted_transactions_never_reach_the_read_model(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=3)
    history = sample_history(accounts=20, events=900, seed=11)
    committed = history[:300] + history[600:]
    seed_events(kafka_settings, topic, history[:300])
    seed_events(kafka_settings, topic, history[300:600], commit=False, transaction_size=100)
    # versions continue after the aborted ones would have been; the fold ignores versions
    seed_events(kafka_settings, topic, history[600:])
    projection = AccountBalances(name=projection_name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, database_url) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        assert stats.applied == 600
        got = read_accounts(runner.engine, projection)
        assert {k: v[:2] + v[3:] for k, v in got.items()} == {
            k: v[:2] + v[3:] for k, v in expected_accounts(committed).items()
        }
        assert sum(v[2] for v in got.values()) == 600
        assert all(s.lag == 0 for s in runner.status())


HOSTILE = [
    "'); DROP TABLE eventsource_checkpoints;--",
    "Robert'); DROP TABLE students;--",
    "double \"quotes\" and 'single'",
    "back\\slash %s %(x)s :param ? $1",
    "newline\nand\ttab",
    "ünïcödé — 🧾",
]


def test_hostile_values_round_trip_verbatim(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    history = [
        SeedEvent(f"id {i} {value}"[:64], AccountOpened(owner=value))
        for i, value in enumerate(HOSTILE)
    ]
    seed_events(kafka_settings, topic, history)
    projection = AccountBalances(name=projection_name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, database_url) as runner:
        runner.run_until_caught_up(timeout=60)
        got = read_accounts(runner.engine, projection)
    assert {k: v[0] for k, v in got.items()} == {e.aggregate_id: e.event.owner for e in history}  # type: ignore[attr-defined]


def test_wait_for_positions_returns_once_the_runner_passed_them(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=3)
    projection = AccountBalances(name=projection_name, topics=[topic])
    stop = threading.Event()
    with ProjectionRunner(projection, kafka_settings, database_url, poll_timeout=0.1) as runner:
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            positions = seed_events(kafka_settings, topic, sample_history(5, 50, seed=1))
            wait_for_positions(projection, database_url, positions, timeout=30)
            assert len(read_accounts(runner.engine, projection)) == 5
            # by name: the live version is awaited
            wait_for_positions(projection.name, database_url, positions, timeout=5)
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()


def test_wait_for_positions_times_out_when_nothing_applies_them(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    projection = AccountBalances(name=projection_name, topics=[topic])
    positions = seed_events(kafka_settings, topic, sample_history(2, 4, seed=2))
    with pytest.raises(WaitTimeoutError, match=rf"{topic}\[0\]@3 \(checkpoint 0\)"):
        wait_for_positions(projection, database_url, positions, timeout=0.3)


class Flaky(Projection):
    """Fails the first ``failures`` attempts at each deposit, after writing a row."""

    name = "flaky"
    retries = 2
    retry_backoff_s = 0.01
    failures = 2
    accounts = AccountBalances.accounts

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.attempts: dict[int, int] = {}

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        AccountBalances._write(self, ctx, int(event.amount * 100))  # type: ignore[arg-type]
        ctx.flush()
        n = self.attempts[ctx.position.offset] = self.attempts.get(ctx.position.offset, 0) + 1
        if n <= self.failures:
            raise RuntimeError(f"transient failure {n}")

    batched = True


def test_a_handler_that_succeeds_on_retry_is_applied_exactly_once(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    history = sample_history(3, 40, seed=5)
    seed_events(kafka_settings, topic, history)
    projection = Flaky(name=projection_name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, str(tmp_path / "rm.db")) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        got = read_accounts(runner.engine, projection)  # type: ignore[arg-type]
    deposits = [e for e in history if isinstance(e.event, MoneyDeposited)]
    assert stats.applied == len(deposits)
    expected: dict[str, int] = {}
    for e in deposits:
        expected[e.aggregate_id] = expected.get(e.aggregate_id, 0) + int(e.event.amount * 100)
    assert {k: v[1] for k, v in got.items()} == expected


def test_the_stop_policy_halts_at_a_failing_handler_without_passing_it(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    history = sample_history(3, 40, seed=5)
    seed_events(kafka_settings, topic, history)
    first_deposit = next(i for i, e in enumerate(history) if isinstance(e.event, MoneyDeposited))
    projection = Flaky(name=projection_name, topics=[topic])
    projection.failures = 10**6  # type: ignore[misc]
    url = str(tmp_path / "rm.db")
    with ProjectionRunner(projection, kafka_settings, url) as runner:
        with pytest.raises(
            ProjectionStoppedError, match=rf"{topic}\[0\]@{first_deposit} .*3 attempt"
        ):
            runner.run_until_caught_up(timeout=60)
        with runner.engine.connect() as conn:
            stored = read_checkpoints(conn, projection.name, 1)
        assert stored == {(topic, 0): first_deposit}
        # a second attempt stops at the same record: nothing was skipped
        with pytest.raises(ProjectionStoppedError):
            runner.run_until_caught_up(timeout=60)
        assert runner.status()[0].checkpoint == first_deposit


def test_a_missing_topic_is_a_clear_error(
    kafka_settings: KafkaSettings, tmp_path: Path, projection_name: str, unique_name: str
) -> None:
    projection = AccountBalances(name=projection_name, topics=[f"{unique_name}_missing"])
    with (
        ProjectionRunner(projection, kafka_settings, str(tmp_path / "rm.db")) as runner,
        pytest.raises(ProjectionError, match="does not exist"),
    ):
        runner.run_until_caught_up(timeout=10)


class Recorder(NullListener):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.events = 0

    def on_assigned(self, partitions: object) -> None:
        self.calls.append("assigned")

    def on_batch(self, n_events: int, seconds: float) -> None:
        self.events += n_events

    def on_caught_up(self) -> None:
        self.calls.append("caught_up")


def test_the_listener_hears_assignment_batches_and_catching_up(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=2)
    seed_events(kafka_settings, topic, sample_history(4, 100, seed=9))
    listener = Recorder()
    projection = AccountBalances(name=projection_name, topics=[topic])
    with ProjectionRunner(
        projection, kafka_settings, str(tmp_path / "rm.db"), listener=listener
    ) as runner:
        runner.run_until_caught_up(timeout=60)
    assert listener.calls[0] == "assigned" and listener.calls[-1] == "caught_up"
    assert listener.events == 100


def test_a_new_version_builds_its_own_tables_while_the_view_shows_the_live_one(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    database_url: str,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    history = sample_history(4, 60, seed=4)
    seed_events(kafka_settings, topic, history[:30])
    v1 = AccountBalances(name=projection_name, topics=[topic])
    with ProjectionRunner(v1, kafka_settings, database_url) as runner:
        runner.run_until_caught_up(timeout=60)
    seed_events(kafka_settings, topic, history[30:])
    v2 = AccountBalances(name=projection_name, version=2, topics=[topic])
    with ProjectionRunner(v2, kafka_settings, database_url) as runner:
        assert runner.group_id.endswith(f".projection.{projection_name}.v2")
        runner.run_until_caught_up(timeout=60)
        view = v1.view_name("accounts")
        with runner.engine.connect() as conn:
            live_events = conn.exec_driver_sql(f"SELECT SUM(events) FROM {view}").scalar()
        assert live_events == 30
        with runner.engine.begin() as conn:
            set_live_version(conn, v2, 2)
        with runner.engine.connect() as conn:
            live_events = conn.exec_driver_sql(f"SELECT SUM(events) FROM {view}").scalar()
        assert live_events == 60


@pytest.fixture(autouse=True)
def _drop_postgres_tables(request: pytest.FixtureRequest, projection_name: str) -> Iterator[None]:
    """PostgreSQL is shared by the whole session: leave no tables behind."""
    yield
    if "postgres_url" not in request.fixturenames:
        return
    engine = create_read_model_engine(request.getfixturevalue("postgres_url"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{projection_name}_accounts"')
        for version in (1, 2):
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{projection_name}_v{version}_accounts"')
        for system in (checkpoints_table, projections_table):
            conn.execute(system.delete().where(system.c.projection == projection_name))
    engine.dispose()


def test_a_checkpoint_beyond_the_end_of_its_partition_is_refused(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    seed_events(kafka_settings, topic, sample_history(2, 10, seed=1))
    projection = AccountBalances(name=projection_name, topics=[topic])
    url = str(tmp_path / "rm.db")
    with ProjectionRunner(projection, kafka_settings, url) as runner:
        runner.run_until_caught_up(timeout=60)
        # 10 records + the commit marker: the end offset is 11
        with runner.engine.begin() as conn:  # as if the topic had been recreated, shorter
            conn.execute(checkpoints_table.update().values(next_offset=1_000))
    with (
        ProjectionRunner(projection, kafka_settings, url) as runner,
        pytest.raises(
            ProjectionError, match=rf"checkpoint 1000 .* {topic}\[0\] is beyond .* end offset 11"
        ),
    ):
        runner.run_until_caught_up(timeout=30)


def test_run_until_caught_up_after_an_append_applies_what_the_append_wrote(
    kafka_settings: KafkaSettings, tmp_path: Path, unique_name: str, projection_name: str
) -> None:
    # Commit markers land after the append returned: without after= the end "as of the
    # call" can stop short of the event just written (issue 12, defect 11).
    prefix = f"{unique_name}."
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    projection = AccountBalances(name=projection_name, topic_prefix=prefix)
    with (
        KafkaEventStore(settings, [Account], partitions=1, topic_prefix=prefix) as store,
        ProjectionRunner(projection, settings, str(tmp_path / "rm.db")) as runner,
    ):
        opened = store.append(Account.aggregate_type, "a-1", [AccountOpened(owner="ann")], 0)
        assert runner.run_until_caught_up(timeout=60, after=opened.positions).applied == 1
        for version in range(1, 21):
            result = store.append(
                Account.aggregate_type, "a-1", [MoneyDeposited(amount=1)], version
            )
            stats = runner.run_until_caught_up(timeout=60, after=result.positions)
            assert stats.applied == 1
            assert read_accounts(runner.engine, projection)["a-1"][1:3] == (
                version * 100,
                version + 1,
            )


def test_run_until_caught_up_after_positions_never_written_times_out_naming_them(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    projection_name: str,
) -> None:
    topic = create_topic(partitions=1)
    seed_events(kafka_settings, topic, sample_history(1, 3, seed=1))
    projection = AccountBalances(name=projection_name, topics=[topic])
    with (
        ProjectionRunner(projection, kafka_settings, str(tmp_path / "rm.db")) as runner,
        pytest.raises(WaitTimeoutError, match=rf"{re.escape(topic)}\[0\].*\(4, 1001\)"),
    ):
        runner.run_until_caught_up(timeout=1, after=[Position(topic, 0, 1000)])
