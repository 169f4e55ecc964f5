"""``ctx.upsert`` with values for only some of the table's columns, on SQLite and on the real
PostgreSQL: the columns left out keep their stored values on conflict and take their
defaults (server, Python scalar or callable, NULL) on insert, whether the upsert is deferred
alone, merged with many others (by COPY on PostgreSQL), mixed with upserts of other column
sets on the same table, or immediate."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, String, Table, Text, select, text

from eventsource.projection import Context, Projection, table
from eventsource.projection.pgcopy import MIN_ROWS
from eventsource.projection.store import create_read_model_engine, ensure_schema, projections_table
from examples.bank.domain import Account

STAGES = (
    "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
    "AND relname LIKE 'eventsource\\_stage\\_%'"
)


class Partial(Projection):
    name = "partial_upserts"
    aggregates = (Account,)
    items = table(
        "items",
        Column("id", String(64), primary_key=True),
        Column("n", Integer),
        Column("label", String(50), server_default="none"),
        Column("level", Integer, nullable=False, server_default="3"),
        Column("note", Text),
        Column("made", Integer, default=7),
        Column("origin", String(20), default=lambda: "python"),
    )


#: what a row inserted with only its key holds
DEFAULTS = {"n": None, "label": "none", "level": 3, "note": None, "made": 7, "origin": "python"}
COLUMNS = ("id", *DEFAULTS)
#: stored rows the upserts meet: every column set, none to its default
STORED: list[dict[str, Any]] = [
    {
        "id": f"s{i}",
        "n": i,
        "label": "kept",
        "level": 9,
        "note": "stored",
        "made": 1,
        "origin": "db",
    }
    for i in range(40)
]

#: values for the columns with Python-side defaults: upserts that give them can go by COPY
#: (leaving one out sends the rows through SQLAlchemy's execution, which computes it)
PYTHON = {"made": 5, "origin": "handler"}

Call = tuple[dict[str, Any], bool]  # (values, immediate); "n" is an increment


class Database:
    """A read-model database holding :data:`STORED` in the projection's ``items`` table."""

    def __init__(self, engine: Engine, items: Table) -> None:
        self.engine, self.items = engine, items

    def run(self, calls: Sequence[Call]) -> tuple[dict[str, dict[str, Any]], bool]:
        """The table after ``calls`` (as one batch's handlers make them, then the flush),
        and whether a COPY stage was used; rolled back after (every run meets STORED)."""
        with self.engine.connect() as conn, conn.begin() as transaction:
            if conn.dialect.name == "postgresql":
                conn.execute(text("DISCARD TEMP"))
            ctx = Context(conn, {"items": self.items})
            for values, immediate in calls:
                ctx.upsert("items", values, key=["id"], increment=["n"], immediate=immediate)
            ctx.flush()
            stored = {str(row.id): row._asdict() for row in conn.execute(select(self.items))}
            copied = conn.dialect.name == "postgresql" and bool(
                conn.execute(text(STAGES)).scalar_one()
            )
            transaction.rollback()
        return stored, copied


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'partial.db'}"
        projection = Partial()
    else:
        url = request.getfixturevalue("postgres_url")
        projection = Partial(name=f"partial_{uuid.uuid4().hex[:8]}")
    engine = create_read_model_engine(url)
    ensure_schema(engine, projection)
    items = projection.tables["items"]
    with engine.begin() as conn:
        conn.execute(items.insert(), STORED)
    try:
        yield Database(engine, items)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{projection.name}_items"')
            items.drop(conn)
            mine = projections_table.c.projection == projection.name
            conn.execute(projections_table.delete().where(mine))
        engine.dispose()


def _expected(calls: Sequence[Call]) -> dict[str, dict[str, Any]]:
    """The table after executing the upserts one by one."""
    rows: dict[str, dict[str, Any]] = {row["id"]: dict(row) for row in STORED}
    for values, _ in calls:
        row = rows.get(values["id"])
        if row is None:
            rows[values["id"]] = {**DEFAULTS, **values}
            continue
        for column, value in values.items():
            if column == "n":
                row["n"] = None if row["n"] is None or value is None else row["n"] + value
            else:
                row[column] = value
    return rows


def test_one_deferred_upsert_of_some_columns(db: Database) -> None:
    one: list[dict[str, Any]] = [
        {"id": "s3", "n": 5},
        {"id": "new", "note": "only"},
        {"id": "s4", "label": "x"},
        {"id": "s5", "n": 1, **PYTHON},
        {"id": "new", **PYTHON},
    ]
    for values in one:
        calls = [(values, False)]
        assert db.run(calls) == (_expected(calls), False)


def test_many_merged_upserts_of_some_columns(db: Database) -> None:
    rng = random.Random(7)
    keys = [f"s{i}" for i in range(0, 40, 2)] + [f"new{i}" for i in range(30)]
    calls: list[Call] = [
        ({"id": rng.choice(keys), "n": rng.randrange(5), "note": f"r{i}", **PYTHON}, False)
        for i in range(300)
    ]
    assert len({values["id"] for values, _ in calls}) >= MIN_ROWS
    stored, copied = db.run(calls)
    assert stored == _expected(calls)
    assert copied == (db.engine.dialect.name == "postgresql")  # the COPY flush ran


def test_upserts_of_different_column_sets_on_one_table_in_one_batch(db: Database) -> None:
    rng = random.Random(11)
    keys = [f"s{i}" for i in range(0, 40, 3)] + [f"new{i}" for i in range(40)]
    shapes: list[Any] = [
        lambda i: {"id": rng.choice(keys), "n": 1, **PYTHON},
        lambda i: {"id": rng.choice(keys), "label": f"l{i}", **PYTHON},
        lambda i: {"id": rng.choice(keys), "level": i, "note": None, "n": 2, **PYTHON},
        lambda i: {"id": rng.choice(keys), "made": i, "origin": "handler"},
        lambda i: {"id": rng.choice(keys)},
    ]
    calls: list[Call] = []
    for run in range(12):  # runs of one shape (long enough for COPY) and interleaved ones
        shape = shapes[run % len(shapes)]
        length = 60 if run < len(shapes) else 3
        calls += [(shape(len(calls)), False) for _ in range(length)]
    calls += [(rng.choice(shapes)(i), False) for i in range(100)]
    stored, copied = db.run(calls)
    assert stored == _expected(calls)
    assert copied == (db.engine.dialect.name == "postgresql")


def test_immediate_upserts_of_some_columns_between_deferred_ones(db: Database) -> None:
    calls: list[Call] = [
        ({"id": "s1", "n": 1}, True),
        ({"id": "new1", "label": "now"}, True),
        ({"id": "new1", "n": 4}, False),
        ({"id": "new1", "note": "later"}, True),
        ({"id": "s2"}, True),
        ({"id": "new2"}, True),
        ({"id": "s1", "origin": "handler", "n": 2}, False),
        ({"id": "s1", "made": 0}, True),
        ({"id": "s3", "n": 1, **PYTHON}, True),
        ({"id": "new3", "note": "x", **PYTHON}, True),
        ({"id": "new3", "label": "y", **PYTHON}, False),
    ]
    assert db.run(calls) == (_expected(calls), False)
