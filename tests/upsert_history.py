"""Random upsert histories for the ``counts`` table the upsert-folding tests declare, and
their application through a projection ``Context`` (shared by the SQLite unit test of the
fold and the PostgreSQL ``COPY`` flush test, so both check the same histories)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, select

from eventsource.projection import Context

__all__ = ["apply_upserts", "upsert_history"]


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
