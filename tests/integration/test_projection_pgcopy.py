"""PostgreSQL: a large group of merged deferred upserts goes by COPY into a session
temporary table and one INSERT ... SELECT ... ON CONFLICT, with the effect of executing its
rows one by one (real PostgreSQL; no broker needed)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import confluent_kafka
import pytest
from sqlalchemy import (
    ARRAY,
    CHAR,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    String,
    Text,
    Uuid,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import EventMetadata
from eventsource.projection import Context, NullListener, Projection, on, table
from eventsource.projection.batch import BatchApplier
from eventsource.projection.pgcopy import MIN_ROWS
from eventsource.projection.store import create_read_model_engine, ensure_schema
from eventsource.projection.types import StopOnFailure
from examples.bank.domain import Account, AccountOpened
from tests.upsert_history import Tally, apply_upserts, upsert_history

STAGES = (
    "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
    "AND relname LIKE 'eventsource\\_stage\\_%'"
)


class PgTally(Tally):
    name = "pgcopy_tally"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Typed(Projection):
    name = "pgcopy_typed"
    aggregates = (Account,)
    values = table(
        "values",
        Column("id", String(64), primary_key=True),
        Column("amount", Numeric(18, 2)),
        Column("at", DateTime(timezone=True)),
        Column("day", Date),
        Column("flag", Boolean),
        Column("ratio", Float),
        Column("blob", LargeBinary),
        Column("color", Enum(Color, name="pgcopy_color")),
        Column("doc", JSON),
        Column("docb", JSONB),
        Column("ref", Uuid),
        Column("wait", Interval),
        Column("note", Text),
        Column("numbers", ARRAY(Integer)),
        Column("seen", BigInteger),
    )


class Padded(Projection):
    """Keys in a CHAR column: 'k1' and 'k1 ' differ in Python, name one row in PostgreSQL."""

    name = "pgcopy_padded"
    aggregates = (Account,)
    owners = table(
        "owners", Column("id", CHAR(8), primary_key=True), Column("n", Integer, nullable=False)
    )

    @on(AccountOpened)
    def _opened(self, event: AccountOpened, ctx: Context) -> None:
        ctx.upsert(self.owners, {"id": ctx.meta.aggregate_id, "n": 1}, key=["id"], increment=["n"])


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_read_model_engine(postgres_url)
    ensure_schema(engine, PgTally())
    yield engine
    with engine.begin() as conn:
        for t in PgTally().tables.values():
            conn.execute(t.delete())
    engine.dispose()


def _apply(conn: Connection, rows: list[dict[str, Any]], immediate: bool) -> list[Any]:
    return apply_upserts(conn, PgTally().tables, rows, immediate)


@pytest.mark.parametrize("seed", range(3))
def test_copied_batch_leaves_the_table_the_per_row_execution_leaves(
    engine: Engine, seed: int
) -> None:
    history = upsert_history(seed, 600, keys=60)
    with engine.connect() as conn, conn.begin():
        _apply(conn, history[:40], immediate=True)  # stored rows for merged rows to meet
        one_by_one = _apply(conn, history[40:], immediate=True)
        conn.rollback()
    with engine.connect() as conn, conn.begin():
        _apply(conn, history[:40], immediate=True)
        copied = _apply(conn, history[40:], immediate=False)
        assert conn.execute(text(STAGES)).scalar_one() >= 1  # it went by COPY
    assert copied == one_by_one


def test_two_copied_flushes_in_one_transaction_apply_each_row_once(engine: Engine) -> None:
    rows = [{"id": f"k{i}", "part": 0, "label": None, "n": 1, "last": i} for i in range(50)]
    with engine.connect() as conn, conn.begin():
        _apply(conn, rows, immediate=False)
        twice = _apply(conn, rows, immediate=False)
    assert {r.n for r in twice} == {2}
    with engine.connect() as conn, conn.begin():  # the next transaction starts empty too
        thrice = _apply(conn, rows, immediate=False)
    assert {r.n for r in thrice} == {3}


def test_small_groups_and_unmerged_rows_go_by_executemany(engine: Engine) -> None:
    small = [
        {"id": f"k{i}", "part": 0, "label": None, "n": 1, "last": i} for i in range(MIN_ROWS - 1)
    ]
    floats = PgTally().tables["floats"]
    with engine.connect() as conn, conn.begin():
        conn.execute(text("DISCARD TEMP"))
        _apply(conn, small, immediate=False)
        ctx = Context(conn, PgTally().tables)
        for i in range(3 * MIN_ROWS):  # float sums are not merged: repeated keys stay
            ctx.upsert("floats", {"id": f"f{i % 3}", "x": 0.1}, key=["id"], increment=["x"])
        ctx.flush()
        assert conn.execute(text(STAGES)).scalar_one() == 0
        sums = dict(conn.execute(select(floats.c.id, floats.c.x)).all())
    expected = 0.0
    for _ in range(MIN_ROWS):
        expected += 0.1
    assert sums == {"f0": expected, "f1": expected, "f2": expected}


class RolledBack(StopOnFailure):
    """Counts the batches whose fast path was rolled back."""

    rollbacks = 0

    def after_rollback(self) -> None:
        self.rollbacks += 1


def _opened(offset: int, aggregate_id: str, codec: EventCodec) -> Any:
    meta = EventMetadata(
        str(uuid.uuid4()),
        AccountOpened.event_type(),
        "bank.account",
        aggregate_id,
        1,
        datetime.now(UTC),
    )
    return confluent_kafka.Message(
        topic="pgcopy",
        partition=0,
        offset=offset,
        key=aggregate_id.encode(),
        value=codec.encode(AccountOpened(owner="o")),
        headers=[
            (k, v.encode() if isinstance(v, str) else v)
            for k, v in build_headers(meta, source="/test")
        ],
    )


def test_keys_equal_only_in_the_database_fall_back_to_record_by_record(
    postgres_url: str,
) -> None:
    engine = create_read_model_engine(postgres_url)
    projection = Padded(name=f"pgcopy_padded_{uuid.uuid4().hex[:6]}", topics=["pgcopy"])
    ensure_schema(engine, projection)
    codec = EventCodec.for_events([AccountOpened])
    ids = [f"k{i}" for i in range(MIN_ROWS)] + ["k1 ", "k2  "]  # CHAR(8): k1 = 'k1 '
    messages = [_opened(offset, aggregate_id, codec) for offset, aggregate_id in enumerate(ids)]
    hook = RolledBack()
    applier = BatchApplier(projection, engine, codec, hook, NullListener())
    try:
        outcome = applier.apply(messages, {("pgcopy", 0): len(messages)})
        with engine.connect() as conn:
            stored: dict[str, int] = dict(conn.execute(select(*projection.owners.c)).all())
    finally:
        engine.dispose()
    assert hook.rollbacks == 1  # the fast path was refused (SQLSTATE 21000), then careful
    assert (outcome.applied, outcome.dead_lettered) == (len(ids), 0)
    expected = {f"{i:<8}": 1 for i in ids[:MIN_ROWS]}
    expected["k1      "] = expected["k2      "] = 2
    assert stored == expected


def test_a_user_who_may_not_create_temporary_tables_gets_executemany(postgres_url: str) -> None:
    admin = create_read_model_engine(postgres_url)
    suffix = uuid.uuid4().hex[:8]
    database, role = f"es_notemp_{suffix}", f"es_notemp_{suffix}"
    with admin.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"CREATE DATABASE {database}"))
        conn.execute(text(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC"))
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    owner = create_read_model_engine(admin.url.set(database=database).render_as_string(False))
    with owner.begin() as conn:
        conn.execute(text(f"GRANT CREATE ON SCHEMA public TO {role}"))
    user = create_read_model_engine(
        admin.url.set(database=database, username=role).render_as_string(False)
    )
    try:
        ensure_schema(user, PgTally())
        rows = [{"id": f"k{i}", "part": 0, "label": "a", "n": 1, "last": i} for i in range(50)]
        with user.connect() as conn, conn.begin():
            _apply(conn, rows, immediate=False)
            stored = _apply(conn, rows, immediate=False)
            assert conn.execute(text(STAGES)).scalar_one() == 0
        assert [r.n for r in stored] == [2] * 50
    finally:
        user.dispose()
        owner.dispose()
        with admin.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f"DROP DATABASE {database} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_values_of_common_column_types_read_back_as_executemany_wrote_them(
    postgres_url: str,
) -> None:
    engine = create_read_model_engine(postgres_url)
    projection = Typed(name=f"pgcopy_typed_{uuid.uuid4().hex[:6]}")
    ensure_schema(engine, projection)
    rows = [
        {
            "id": f"k{i}",
            "amount": Decimal("1.25") * i,
            "at": datetime(2026, 1, 1, 12, i % 60, tzinfo=UTC),
            "day": date(2026, 1, 1 + i % 28),
            "flag": i % 2 == 0,
            "ratio": float("nan") if i == 3 else i / 3,
            "blob": bytes([0, 1, 92, i % 256]) + b"\\x",
            "color": Color.RED if i % 2 else Color.BLUE,
            "doc": {"a": [1, "tab\there\nnewline \\"], "b": None},
            "docb": {"quote": 'it\'s "quoted"'},
            "ref": uuid.UUID(int=i),
            "wait": timedelta(seconds=i),
            "note": "tab\there\nnewline \\ back 'q' \"dq\" ünï" if i % 5 else None,
            "numbers": [i, None, 3],
            "seen": 1,
        }
        for i in range(2 * MIN_ROWS)
    ]
    stored: dict[bool, list[str]] = {}
    try:
        for immediate in (True, False):
            with engine.connect() as conn, conn.begin():
                conn.execute(projection.values.delete())
                ctx = Context(conn, projection.tables)
                for values in rows + rows:  # every key twice: merged, then one row each
                    ctx.upsert(
                        projection.values,
                        values,
                        key=["id"],
                        increment=["seen"],
                        immediate=immediate,
                    )
                ctx.flush()
                stored[immediate] = sorted(map(repr, conn.execute(select(projection.values))))
    finally:
        engine.dispose()
    assert stored[False] == stored[True]
    assert "2)" in stored[False][0]  # seen: 1 + 1
