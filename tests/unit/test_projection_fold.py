"""Deferred upserts with repeated keys are merged per key before the executemany: the
table ends as if every row had been executed in order, with fewer rows sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select

from eventsource.projection import Context
from eventsource.projection.store import create_read_model_engine, ensure_schema
from tests.upsert_history import Tally, apply_upserts, upsert_history


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_read_model_engine(tmp_path / "rm.db")
    ensure_schema(engine, Tally())
    yield engine
    engine.dispose()


def _apply(conn: Connection, rows: list[dict[str, Any]], immediate: bool) -> list[Any]:
    return apply_upserts(conn, Tally().tables, rows, immediate)


def _sent_rows(engine: Engine) -> list[int]:
    """Number of parameter rows of each statement sent to the database."""
    sent: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.startswith("INSERT"):
            sent.append(len(params) if many else 1)

    return sent


@pytest.mark.parametrize("seed", range(5))
def test_folded_batch_leaves_the_table_the_per_row_execution_leaves(
    engine: Engine, seed: int
) -> None:
    history = upsert_history(seed, 300)
    with engine.begin() as conn:
        # a stored row first, so that merged rows also meet existing values
        _apply(conn, history[:20], immediate=True)
        one_by_one = _apply(conn, history[20:], immediate=True)
        conn.rollback()
    with engine.begin() as conn:
        _apply(conn, history[:20], immediate=True)
        folded = _apply(conn, history[20:], immediate=False)
    assert folded == one_by_one


def test_repeated_keys_reach_the_database_as_one_row_each(engine: Engine) -> None:
    sent = _sent_rows(engine)
    history = [{"id": f"k{i % 3}", "part": 0, "label": None, "n": 1, "last": i} for i in range(30)]
    with engine.begin() as conn:
        table_rows = _apply(conn, history, immediate=False)
    assert sent == [3]
    assert table_rows == [("k0", 0, None, 10, 27), ("k1", 0, None, 10, 28), ("k2", 0, None, 10, 29)]


def test_float_increments_are_not_merged(engine: Engine) -> None:
    sent = _sent_rows(engine)
    with engine.begin() as conn:
        ctx = Context(conn, Tally().tables)
        for x in (0.1, 0.2, 0.3):
            ctx.upsert("floats", {"id": "a", "x": x}, key=["id"], increment=["x"])
        ctx.flush()
        (stored,) = conn.execute(select(Tally().tables["floats"].c.x)).scalars()
    assert sent == [3]
    assert stored == (0.1 + 0.2) + 0.3
