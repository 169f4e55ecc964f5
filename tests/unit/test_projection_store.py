"""Read-model store, checkpoints, hooks and waiting: the parts that need no broker."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from eventsource.domain import EventMetadata, Position
from eventsource.errors import (
    ConfigurationError,
    DatabaseNotFoundError,
    InvalidIdentifierError,
    ProjectionError,
    ProjectionStoppedError,
    WaitTimeoutError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    FailureAction,
    NullListener,
    ProjectionRunner,
    RawRecord,
    set_live_version,
    wait_for_positions,
)
from eventsource.projection.checkpoints import (
    checkpoints_table,
    ensure_checkpoint_rows,
    read_checkpoints,
    write_checkpoints,
)
from eventsource.projection.store import (
    create_read_model_engine,
    ensure_schema,
    live_version,
    read_only,
)
from eventsource.projection.types import Failure, GuardedListener, StopOnFailure, stopped_error
from examples.bank.projections import AccountBalances


@pytest.mark.parametrize("url", ["mysql://user@host/db", "oracle://x", "not a url://"])
def test_unsupported_database_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        create_read_model_engine(url)


def test_a_plain_path_is_a_sqlite_database_in_wal_mode(tmp_path: Path) -> None:
    engine = create_read_model_engine(tmp_path / "rm.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_schema_creation_makes_the_first_version_live_and_keeps_it(tmp_path: Path) -> None:
    engine = create_read_model_engine(tmp_path / "rm.db")
    try:
        v1, v2 = AccountBalances(), AccountBalances(version=2)
        assert ensure_schema(engine, v1) == 1
        assert ensure_schema(engine, v2) == 1  # v2 builds beside v1, which keeps serving
        names = set(inspect(engine).get_table_names())
        assert {"balances_v1_accounts", "balances_v2_accounts", "eventsource_checkpoints"} <= names
        assert "balances_accounts" in inspect(engine).get_view_names()
        with engine.begin() as conn:
            set_live_version(conn, v2, 2)
        with engine.connect() as conn:
            assert live_version(conn, "balances") == 2
    finally:
        engine.dispose()


def test_checkpoints_are_per_projection_version_and_partition(tmp_path: Path) -> None:
    engine = create_read_model_engine(tmp_path / "rm.db")
    try:
        ensure_schema(engine, AccountBalances())
        with engine.begin() as conn:
            ensure_checkpoint_rows(conn, "balances", 1, [("t", 0), ("t", 1)])
            ensure_checkpoint_rows(conn, "balances", 1, [("t", 0)])  # idempotent
            write_checkpoints(conn, "balances", 1, {("t", 1): 42})
            ensure_checkpoint_rows(conn, "balances", 2, [("t", 1)])
        with engine.connect() as conn:
            assert read_checkpoints(conn, "balances", 1) == {("t", 0): 0, ("t", 1): 42}
            assert read_checkpoints(conn, "balances", 1, [("t", 1)]) == {("t", 1): 42}
            assert read_checkpoints(conn, "balances", 2) == {("t", 1): 0}
    finally:
        engine.dispose()


def test_wait_for_positions_refuses_a_hostile_projection_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdentifierError):
        wait_for_positions("x'; DROP TABLE y;--", str(tmp_path / "rm.db"), [], timeout=0)


def test_wait_for_positions_on_a_fresh_database_times_out_naming_the_position(
    tmp_path: Path,
) -> None:
    with pytest.raises(WaitTimeoutError, match=r"t\[2\]@7 \(checkpoint 0\)") as caught:
        wait_for_positions("balances", str(tmp_path / "rm.db"), [Position("t", 2, 7)], timeout=0.05)
    assert caught.value.retriable


def test_wait_for_positions_keeps_asking_an_unreachable_database_and_says_so_at_last() -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    with pytest.raises(WaitTimeoutError, match=r"t\[2\]@7 .*the database failed meanwhile"):
        wait_for_positions("balances", unreachable, [Position("t", 2, 7)], timeout=0.05)


def test_wait_for_no_positions_returns_at_once(tmp_path: Path) -> None:
    wait_for_positions(AccountBalances(), str(tmp_path / "rm.db"), [], timeout=0)


def test_a_batch_size_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectionError, match="batch_size"):
        ProjectionRunner(AccountBalances(), KafkaSettings(), str(tmp_path / "rm.db"), batch_size=0)


def test_the_stop_policy_answers_stop_and_says_where_and_what_to_do() -> None:
    record = RawRecord("bank.account.events", 3, 1207, b"acc-1", b"\x00", (), None)
    meta = EventMetadata(
        "id-1", "bank.account.MoneyDeposited", "bank.account", "acc-1", 4, datetime.now(UTC)
    )
    failure = Failure(AccountBalances(), "handler", record, ValueError("boom"), 4, meta)
    assert StopOnFailure().on_failure(failure, None) is FailureAction.STOP  # type: ignore[arg-type]
    error = stopped_error(failure)
    assert isinstance(error, ProjectionStoppedError)
    message = str(error)
    for part in (
        "'balances' v1",
        "bank.account.events[3]@1207",
        "MoneyDeposited of 'acc-1'",
        "4 attempt",
        "ValueError: boom",
        "DeadLetterPolicy.SKIP",
    ):
        assert part in message


@pytest.mark.parametrize(
    "overrides",
    [{"isolation.level": "read_uncommitted"}, {"enable.auto.commit": True}],
)
def test_consumer_overrides_cannot_weaken_exactly_once(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError, match="not allowed for a projection runner"):
        ProjectionRunner(
            AccountBalances(),
            KafkaSettings(),
            str(tmp_path / "rm.db"),
            consumer_overrides=overrides,
        )


def test_a_failing_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(NullListener):
        def on_batch(self, n_events: int, seconds: float) -> None:
            raise RuntimeError("metrics backend down")

    guarded = GuardedListener(Broken())
    guarded.on_batch(10, 0.5)
    guarded.on_caught_up()  # the others still work
    assert "Broken.on_batch raised" in caplog.text
    assert "metrics backend down" in caplog.text


def test_readers_take_no_write_lock_on_sqlite(tmp_path: Path) -> None:
    engine = create_read_model_engine(tmp_path / "rm.db")
    try:
        ensure_schema(engine, AccountBalances())
        with engine.connect() as raw, read_only(raw) as reader:
            reader.execute(select(checkpoints_table)).all()  # a read transaction stays open
            assert reader.in_transaction()
            done = threading.Event()

            def write() -> None:
                with engine.begin() as writer:  # BEGIN IMMEDIATE: would wait on a writer
                    ensure_checkpoint_rows(writer, "balances", 1, [("t", 0)])
                done.set()

            thread = threading.Thread(target=write)
            thread.start()
            assert done.wait(5), "the writer waited for a reader"
            thread.join()
    finally:
        engine.dispose()


def test_a_read_only_engine_refuses_a_missing_sqlite_file_and_creates_nothing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "rm.db"
    for form in (str(missing), f"sqlite:///{missing}"):
        with pytest.raises(DatabaseNotFoundError, match=str(missing)):
            create_read_model_engine(form, must_exist=True)
    assert not missing.exists()
    create_read_model_engine(missing).dispose()  # writers still create it on first use
