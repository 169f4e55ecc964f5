"""PostgreSQL: a deferred upsert's merged rows sent with ``COPY`` instead of ``executemany``.

psycopg 3's pipelined ``executemany`` spends several microseconds of Python per row
(binding, queueing, reading one result per row); ``COPY`` formats rows in C. A flushed
group of one ``ctx.upsert`` statement whose rows have distinct keys (what the per-key merge
produces) goes, on PostgreSQL through psycopg 3, as:

1. ``CREATE TEMPORARY TABLE IF NOT EXISTS eventsource_stage_<hash> ON COMMIT DELETE ROWS
   AS SELECT <columns> FROM <table> WITH NO DATA``: a session-private staging table with the
   target columns' types and no constraints (created once per connection; emptied at every
   commit of a transaction that touched it, in place);
2. ``COPY eventsource_stage_<hash> (<columns>) FROM STDIN``: the rows;
3. ``WITH moved AS (DELETE FROM <stage> RETURNING <columns>) INSERT INTO <table> (<columns>)
   SELECT <columns> FROM moved ON CONFLICT (<key>) DO UPDATE SET <as the upsert>``: the
   rows applied and the staging table emptied in one statement, so a second flush in the
   same transaction starts from an empty stage.

With distinct keys, one ``INSERT ... SELECT ... ON CONFLICT`` has the effect of executing
the rows one after the other. Keys distinct in Python but equal in the database (a
case-insensitive or padded collation) make PostgreSQL refuse the statement ("ON CONFLICT DO
UPDATE command cannot affect row a second time", SQLSTATE 21000): the batch is rolled back
and applied again on the careful path, record by record, with the same result as before.
Statement-level triggers on the table fire once per flush instead of once per row; row
triggers see the same rows. Only the upserts ``ctx.upsert`` builds use this path, only for
groups of at least :data:`MIN_ROWS` rows, only when no cursor-execute event listener is
installed (listeners see the ``executemany`` as before), and only when the database user may
create temporary tables (``TEMPORARY`` on the database, which PostgreSQL grants to everyone
by default; asked once per pooled connection): without it, ``executemany`` as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection, Dialect, Table, column, select
from sqlalchemy import table as table_clause

from eventsource.projection.store import upsert_statement

__all__ = ["MIN_ROWS", "CopyUpsert", "Spec", "copy_upsert", "may_stage"]

#: (columns, key, increment, coalesce) of one ``ctx.upsert`` call
Spec = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]

#: smallest group sent by COPY (three statements); smaller groups go by executemany
MIN_ROWS: Final = 32
#: key in SQLAlchemy's per-DBAPI-connection ``info``: may this session create temp tables
_MAY_STAGE: Final = "eventsource.pgcopy.may_stage"
_ASK: Final = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"


class CopyUpsert:
    """The three statements of one upsert's COPY flush (see the module docstring)."""

    __slots__ = ("copy", "create", "merge")

    def __init__(self, table: Table, dialect: Dialect, names: Sequence[str], spec: Spec) -> None:
        _, key, increment, coalesce = spec
        columns = [table.c[n] for n in names]  # names: the upsert's parameters, in order
        types = tuple((c.name, repr(c.type)) for c in columns)
        digest = hashlib.sha256(repr((table.schema, table.name, types)).encode()).hexdigest()
        stage_name = f"eventsource_stage_{digest[:16]}"
        self.create: str = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage_name} ON COMMIT DELETE ROWS AS "
            f"{select(*columns).compile(dialect=dialect)} WITH NO DATA"
        )
        quote = dialect.identifier_preparer.quote
        names_sql = ", ".join(quote(c.name) for c in columns)
        self.copy: str = f"COPY {stage_name} ({names_sql}) FROM STDIN"
        stage = table_clause(stage_name, *(column(c.name) for c in columns))
        moved = stage.delete().returning(*stage.c).cte("moved")
        merge = upsert_statement(
            "postgresql", table, names, key, increment, coalesce, source=select(*moved.c)
        )
        self.merge: str = str(merge.compile(dialect=dialect))

    def run(self, cursor: Any, rows: Sequence[Sequence[Any]]) -> None:
        """Send ``rows`` (positional, in ``names`` order, keys distinct) on ``cursor``."""
        cursor.execute(self.create)
        with cursor.copy(self.copy) as pipe:
            write = pipe.write_row
            for row in rows:
                write(row)
        cursor.execute(self.merge)


def copy_upsert(
    connection: Connection, table: Table, names: Sequence[str], spec: Spec
) -> CopyUpsert | None:
    """The COPY flush of an upsert, when ``connection`` is PostgreSQL through psycopg 3."""
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None
    return CopyUpsert(table, dialect, names, spec)


def may_stage(connection: Connection) -> bool:
    """Whether ``connection``'s user may create the staging table (asked once per DBAPI
    connection: a refused ``CREATE TEMPORARY TABLE`` would abort the batch's transaction)."""
    info = connection.info
    allowed = info.get(_MAY_STAGE)
    if allowed is None:
        allowed = info[_MAY_STAGE] = bool(connection.exec_driver_sql(_ASK).scalar())
    return bool(allowed)
