"""The ``Tally`` projection the upsert-folding tests write to, random upsert histories for
its ``counts`` table, and their application through a projection ``Context`` (shared by the
SQLite unit test of the fold and the PostgreSQL ``COPY`` flush test, so both check the same
histories on the same tables)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Connection, Float, Integer, String, Table, select

from eventsource.projection import Context, Projection, table
from examples.bank.domain import Account

__all__ = ["Tally", "apply_upserts", "upsert_history"]


class Tally(Projection):
    """``counts`` (key ``id, part``) and ``floats``; subclasses give it another name."""

    name = "tally"
    aggregates = (Account,)
    counts = table(
        "counts",
        Column("id", String(64), primary_key=True),
        Column("part", Integer, primary_key=True),
        Column("label", String(200)),
        Column("n", Integer),
        Column("last", Integer, nullable=False),
    )
    floats = table("floats", Column("id", String(64), primary_key=True), Column("x", Float))


def upsert_history(seed: int, n: int, keys: int = 7) -> list[dict[str, Any]]:
    """``n`` rows for ``counts`` (key ``id, part``; ``n`` incremented, ``label``
    coalesced), over ``keys`` ids, with a few NULL and negative increments."""
    rng = random.Random(seed)
    return [
        {
            "id": f"k{rng.randrange(keys)}",
            "part": rng.randrange(2),
            "label": rng.choice([None, None, "a", "b"]),
            "n": rng.choice([None, *range(-5, 20)]) if rng.random() < 0.05 else rng.randrange(9),
            "last": i,
        }
        for i in range(n)
    ]


def apply_upserts(
    conn: Connection, tables: Mapping[str, Table], rows: list[dict[str, Any]], immediate: bool
) -> list[Any]:
    """Upsert ``rows`` into ``counts`` (deferred, or ``immediate``), flush, and return the
    table's rows sorted."""
    ctx = Context(conn, tables)
    for values in rows:
        ctx.upsert(
            "counts",
            values,
            key=["id", "part"],
            increment=["n"],
            coalesce=["label"],
            immediate=immediate,
        )
    ctx.flush()
    return sorted(conn.execute(select(tables["counts"])).all())
