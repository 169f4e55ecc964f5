"""The handler context on a real SQLite file: immediate and batched writes keep their meaning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Engine, Integer, String, insert, select, text
from sqlalchemy.dialects import postgresql

from eventsource.errors import ConfigurationError
from eventsource.projection import Context, Projection, table
from eventsource.projection.store import create_read_model_engine, ensure_schema, upsert_statement
from examples.bank.domain import Account


class Ledger(Projection):
    name = "ledger"
    aggregates = (Account,)
    rows = table(
        "rows",
        Column("id", String(64), primary_key=True),
        Column("label", String(200)),
        Column("n", Integer, nullable=False),
    )
    log = table("log", Column("seq", Integer, primary_key=True), Column("note", String(200)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_read_model_engine(tmp_path / "rm.db")
    yield engine
    engine.dispose()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    projection = Ledger()
    ensure_schema(engine, projection)
    return projection


def rows(conn: Connection, projection: Ledger) -> dict[str, tuple[str | None, int]]:
    return {r.id: (r.label, r.n) for r in conn.execute(select(projection.rows))}


def test_deferred_upserts_run_at_flush_as_one_group(engine: Engine, ledger: Ledger) -> None:
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        for i in range(5):
            ctx.upsert(ledger.rows, {"id": f"r{i}", "label": "x", "n": i}, key=["id"])
        assert ctx.pending == 5
        assert rows(conn, ledger) == {}
        ctx.flush()
        assert ctx.pending == 0
        assert rows(conn, ledger) == {f"r{i}": ("x", i) for i in range(5)}


def test_increment_adds_and_coalesce_keeps_stored_values(engine: Engine, ledger: Ledger) -> None:
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        ctx.upsert(
            "rows",
            {"id": "a", "label": "first", "n": 5},
            key=["id"],
            increment=["n"],
            coalesce=["label"],
        )
        ctx.upsert(
            "rows",
            {"id": "a", "label": None, "n": 7},
            key=["id"],
            increment=["n"],
            coalesce=["label"],
        )
        ctx.upsert(
            "rows",
            {"id": "a", "label": "second", "n": -2},
            key=["id"],
            increment=["n"],
            coalesce=["label"],
        )
        ctx.flush()
        assert rows(conn, ledger) == {"a": ("second", 10)}


def test_immediate_execute_flushes_deferred_statements_first(
    engine: Engine, ledger: Ledger
) -> None:
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        ctx.upsert(ledger.rows, {"id": "a", "label": None, "n": 1}, key=["id"])
        ctx.execute(
            ledger.rows.update().where(ledger.rows.c.id == "a").values(n=ledger.rows.c.n * 10)
        )
        assert rows(conn, ledger) == {"a": (None, 10)}


def test_deferred_statements_on_one_table_keep_their_order(engine: Engine, ledger: Ledger) -> None:
    upsert = {"key": ["id"]}
    set_n = ledger.rows.update().where(ledger.rows.c.id == "a").values(n=ledger.rows.c.n * 2)
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        ctx.upsert(ledger.rows, {"id": "a", "label": None, "n": 1}, increment=["n"], **upsert)
        ctx.defer(set_n, {})  # (1) * 2 = 2
        ctx.upsert(ledger.rows, {"id": "a", "label": None, "n": 1}, increment=["n"], **upsert)  # 3
        ctx.defer(set_n, {})  # 6
        ctx.flush()
        assert rows(conn, ledger) == {"a": (None, 6)}


def test_statements_on_other_tables_do_not_split_groups(engine: Engine, ledger: Ledger) -> None:
    note = insert(ledger.log)
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        for i in range(3):
            ctx.upsert(ledger.rows, {"id": f"r{i}", "label": "x", "n": i}, key=["id"])
            ctx.defer(note, {"seq": i, "note": f"n{i}"})
        groups = ctx._groups
        assert [len(g.params) for g in groups] == [3, 3]
        ctx.flush()
        assert conn.execute(
            select(ledger.log.c.note).order_by(ledger.log.c.seq)
        ).scalars().all() == [
            "n0",
            "n1",
            "n2",
        ]


def test_text_statements_act_as_barriers(engine: Engine, ledger: Ledger) -> None:
    bump = text(f"UPDATE {ledger.rows.name} SET n = n + 100")
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        ctx.upsert(ledger.rows, {"id": "a", "label": None, "n": 1}, key=["id"])
        ctx.defer(bump, {})
        ctx.upsert(ledger.rows, {"id": "b", "label": None, "n": 1}, key=["id"])
        ctx.flush()
        assert rows(conn, ledger) == {"a": (None, 101), "b": (None, 1)}


def test_discard_forgets_deferred_statements(engine: Engine, ledger: Ledger) -> None:
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        ctx.upsert(ledger.rows, {"id": "a", "label": None, "n": 1}, key=["id"])
        ctx.discard()
        ctx.flush()
        assert rows(conn, ledger) == {}


def test_upsert_into_an_undeclared_table_is_a_clear_error(engine: Engine, ledger: Ledger) -> None:
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        with pytest.raises(ConfigurationError, match="no table 'nope'"):
            ctx.upsert("nope", {"id": "a"}, key=["id"])


def test_upsert_with_unknown_columns_or_a_key_outside_the_values_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ConfigurationError, match="no column"):
        upsert_statement("sqlite", ledger.rows, ["id", "colour"], ["id"])
    with pytest.raises(ConfigurationError, match="key"):
        upsert_statement("sqlite", ledger.rows, ["label"], ["id"])
    with pytest.raises(ConfigurationError, match="not supported"):
        upsert_statement("mysql", ledger.rows, ["id"], ["id"])


def test_the_postgresql_upsert_is_on_conflict_do_update(ledger: Ledger) -> None:
    stmt = upsert_statement(
        "postgresql", ledger.rows, ["id", "label", "n"], ["id"], ["n"], ["label"]
    )
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT (id) DO UPDATE" in sql
    assert "n = (ledger_v1_rows.n + excluded.n)" in sql
    assert "coalesce(excluded.label, ledger_v1_rows.label)" in sql


def test_hostile_values_are_bound_not_spliced(engine: Engine, ledger: Ledger) -> None:
    hostile = ["'); DROP TABLE ledger_v1_rows;--", "quote \" and ' both", "\\x00 nul", "ünï €"]
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        for i, value in enumerate(hostile):
            ctx.upsert(ledger.rows, {"id": value, "label": value, "n": i}, key=["id"])
        ctx.flush()
        ctx.execute(insert(ledger.log), {"seq": 1, "note": hostile[0]})
    with engine.connect() as conn:
        assert rows(conn, ledger) == {v: (v, i) for i, v in enumerate(hostile)}
        assert conn.execute(select(ledger.log.c.note)).scalar_one() == hostile[0]


def test_an_upsert_that_differs_from_the_last_one_in_any_part_is_its_own_statement(
    engine: Engine, ledger: Ledger
) -> None:
    key = ["id"]
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        ctx.upsert("rows", {"id": "a", "label": "x", "n": 1}, key=key, increment=["n"])
        ctx.upsert("rows", {"id": "a", "label": "y", "n": 2}, key=key, increment=["n"])
        ctx.upsert("rows", {"id": "a", "label": None, "n": 4}, key=key, coalesce=["label"])
        ctx.upsert("rows", {"id": "a", "n": 8, "label": None}, key=key, coalesce=["label"])
        ctx.upsert(ledger.rows, {"id": "b", "label": "z", "n": 1}, key=key)
        ctx.upsert(ledger.rows, {"id": "b", "label": "z", "n": 1}, key=key, increment=("n",))
        adding = ["n"]
        ctx.upsert(ledger.rows, {"id": "c", "label": "v", "n": 1}, key=key, increment=adding)
        adding.clear()  # changed after the call: the next call overwrites n
        ctx.upsert(ledger.rows, {"id": "c", "label": "w", "n": 5}, key=key, increment=adding)
        ctx.flush()
        # a: 1, +2 (label y), then n overwritten by 4 and 8 with label kept; b: 1 +1
        assert rows(conn, ledger) == {"a": ("y", 8), "b": ("z", 2), "c": ("w", 5)}


def test_deferred_upserts_of_two_tables_in_turn_stay_in_their_groups(
    engine: Engine, ledger: Ledger
) -> None:
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        for i in range(3):
            ctx.upsert("rows", {"id": "a", "label": None, "n": i}, key=["id"], increment=["n"])
            ctx.upsert("log", {"seq": i, "note": f"n{i}"}, key=["seq"])
        ctx.flush()
        assert rows(conn, ledger) == {"a": (None, 3)}
        notes = conn.execute(select(ledger.log.c.note).order_by(ledger.log.c.seq)).scalars()
        assert list(notes) == ["n0", "n1", "n2"]


def test_a_repeated_upsert_given_tuple_constants_joins_the_last_group_as_one_given_equal_lists(
    engine: Engine, ledger: Ledger
) -> None:
    key, adding = ("id",), ("n",)  # constants: recognised by identity
    with engine.begin() as conn:
        ctx = Context(conn, ledger.tables)
        for i in range(3):
            ctx.upsert(ledger.rows, {"id": "a", "label": None, "n": i}, key=key, increment=adding)
            ctx.upsert(ledger.rows, {"id": "b", "label": "x", "n": i}, key=["id"], increment=["n"])
        ctx.upsert(ledger.rows, {"id": "a", "label": "y", "n": 5}, key=key, coalesce=("label",))
        assert [len(group.params) for group in ctx._groups] == [6, 1]
        ctx.flush()
        assert rows(conn, ledger) == {"a": ("y", 5), "b": ("x", 3)}
