"""PostgreSQL read-model helpers the projection tests share: a projection name whose tables
are dropped afterwards, connections named so a test can find and drop exactly its own, and
the balances an AccountBalances projection holds against the fold of its history."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, select, text

from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from eventsource.projection.types import NullListener
from eventsource.testing.seed import SeedEvent, fold
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances


class ErrorsSeen(NullListener):
    """A runner listener that keeps every error the runner reported."""

    def __init__(self) -> None:
        self.seen: list[BaseException] = []

    def on_error(self, exc: BaseException) -> None:
        self.seen.append(exc)


def drop_projection(database_url: str, name: str) -> None:
    """Drop an AccountBalances projection's view, table and rows (the server is shared)."""
    engine = create_read_model_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
            for system in (checkpoints_table, projections_table):
                conn.execute(system.delete().where(system.c.projection == name))
    finally:
        engine.dispose()


@contextmanager
def dropped_afterwards(database_url: str, name: str) -> Iterator[str]:
    """``name``, whose projection is dropped when the block ends."""
    try:
        yield name
    finally:
        drop_projection(database_url, name)


def named(postgres_url: str, application_name: str) -> str:
    """The URL whose connections show ``application_name`` in ``pg_stat_activity``."""
    separator = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{separator}application_name={application_name}"


def terminate(admin: Engine, application_name: str, *, busy_only: bool = False) -> int:
    """Terminate the backends of ``application_name`` (only those not idle if
    ``busy_only``); how many there were."""
    idle = " AND state <> 'idle'" if busy_only else ""
    with admin.connect() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = :name{idle}"
                ),
                {"name": application_name},
            ).all()
        )


def balances(engine: Engine, projection: AccountBalances) -> dict[str, tuple[int, int]]:
    """Balance in cents and event count per account, as the read model holds them."""
    with engine.connect() as conn:
        return {
            r.account_id: (r.balance_cents, r.events)
            for r in conn.execute(select(projection.accounts))
        }


def folded_balances(history: Sequence[SeedEvent]) -> dict[str, tuple[int, int]]:
    """What :func:`balances` must show once every event of ``history`` was applied."""
    return {k: (int(a.balance * 100), a.version) for k, a in fold(Account, history).items()}


def dropped_while_reading_checkpoints(
    admin: Engine, application_name: str, call: Callable[[], Any], timeout: float = 60
) -> Any:
    """Run ``call`` while the checkpoints table is locked; once a backend of
    ``application_name`` waits on the lock to read checkpoints (not to lock them for a
    batch), terminate it, release the lock and return what ``call`` returned (or raise
    what it raised)."""
    with admin.connect() as locker, locker.begin():
        locker.exec_driver_sql(f"LOCK TABLE {checkpoints_table.name} IN ACCESS EXCLUSIVE MODE")
        worker = _Call(call)
        _terminate_once(
            admin,
            application_name,
            "wait_event_type = 'Lock' "
            f"AND query LIKE '%{checkpoints_table.name}%' AND query NOT LIKE '%FOR UPDATE%'",
            worker,
            timeout,
        )
    return worker.result(timeout)


def dropped_while_sleeping(
    admin: Engine, application_name: str, call: Callable[[], Any], timeout: float = 60
) -> Any:
    """Run ``call``; once a backend of ``application_name`` runs ``pg_sleep``, terminate
    it and return what ``call`` returned (or raise what it raised)."""
    worker = _Call(call)
    _terminate_once(admin, application_name, "query LIKE '%pg_sleep%'", worker, timeout)
    return worker.result(timeout)


class _Call(threading.Thread):
    """``call`` in a thread; :meth:`result` hands its return value or error over."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__()
        self.call = call
        self.outcome: dict[str, Any] = {}
        self.start()

    def run(self) -> None:
        try:
            self.outcome["value"] = self.call()
        except BaseException as exc:  # handed to the test's thread
            self.outcome["error"] = exc

    def result(self, timeout: float) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"did not return within {timeout}s of the drop"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["value"]


def _terminate_once(
    admin: Engine, application_name: str, where: str, worker: _Call, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with admin.connect() as conn:
            dropped = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = :name AND {where}"
                ),
                {"name": application_name},
            ).all()
        if dropped:
            return
        assert worker.is_alive(), f"returned before the drop: {worker.outcome}"
        assert time.monotonic() < deadline, f"no backend matched {where!r}"
        time.sleep(0.02)
