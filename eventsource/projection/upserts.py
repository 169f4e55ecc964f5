"""The upserts ``ctx.upsert`` builds: compiled once, merged per key, sent on the DBAPI cursor.

SQLAlchemy's per-row parameter processing costs more than SQLite's own insert; the upserts
``ctx.upsert`` builds are simple enough to skip it: the SQL is compiled once, and each row
only goes through the column types' own bind processors, if any. On PostgreSQL through
psycopg 3, a large group of rows with distinct keys is sent by ``COPY``
(:mod:`eventsource.projection.pgcopy`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Table

from eventsource.projection.pgcopy import MIN_ROWS, CopyUpsert, Spec, copy_upsert, may_stage
from eventsource.projection.store import upsert_statement

__all__ = ["DriverUpsert", "Spec", "run_upsert"]

#: increment values that add up exactly in any order (floats do not)
_EXACT = (int, Decimal)


class DriverUpsert:
    """An upsert compiled once and executed straight on the DBAPI cursor."""

    __slots__ = (
        "coalesce",
        "copy",
        "getter",
        "increment",
        "key",
        "names",
        "others",
        "positional",
        "processed",
        "processors",
        "sql",
        "statement",
        "table",
        "via_sqlalchemy",
    )

    def __init__(self, connection: Connection, table: Table, spec: Spec) -> None:
        columns, key, increment, coalesce = spec
        dialect: Dialect = connection.dialect
        statement = upsert_statement(dialect.name, table, columns, key, increment, coalesce)
        #: what :meth:`fold` needs: key getter, increment and coalesce columns among values
        self.key: Callable[[Mapping[str, Any]], Any] = itemgetter(*key)
        self.increment = tuple(c for c in increment if c in columns)
        self.coalesce = tuple(c for c in coalesce if c in columns and c not in increment)
        #: the columns that take the last row's value (the key columns among them)
        self.others = tuple(c for c in columns if c not in increment and c not in self.coalesce)
        # only the columns given are bound: the others keep their stored values on conflict
        # and take their defaults on insert (compiled without column_keys, every column is)
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        #: a column left out has a Python-side default (``Column(default=...)``): only
        #: SQLAlchemy's execution computes it, so the rows go through it
        self.via_sqlalchemy = any(c.default is not None for c in table.c if c.name not in columns)
        self.statement = statement
        self.table = table
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        self.names: tuple[str, ...] = tuple(
            (compiled.positiontup or ()) if self.positional else compiled.binds
        )
        self.processors: dict[str, Any] = {}
        for name in self.names:
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        #: (index, processor) of the positional parameters that need one
        self.processed = [
            (i, self.processors[n]) for i, n in enumerate(self.names) if n in self.processors
        ]
        names = self.names
        self.getter: Callable[[Mapping[str, Any]], Any] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        )
        self.copy: CopyUpsert | None = (
            None if self.via_sqlalchemy else copy_upsert(connection, table, names, spec)
        )

    def fold(self, params: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Rows with the same key merged into one, with the same effect on the table.

        Executing the merged row has the effect of executing the rows one after the other:
        ``increment`` columns add up (NULL if any is NULL, as in SQL), ``coalesce`` columns
        keep the last value that is not None, every other column takes the last value. Only
        exact sums are merged: when an ``increment`` value is neither int nor Decimal
        (floats do not add associatively), or a key is NULL or unhashable, the rows are
        returned as they are. Different keys keep the order of their first row, so keys that
        differ in Python but name one row in the database (a case-insensitive collation,
        ``'1'`` and ``1`` in an untyped SQLite column) may be applied in another order:
        use ``ctx.defer`` or ``immediate=True`` for such keys.
        """
        return self.merged(params)[0]

    def merged(self, params: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], bool]:
        """:meth:`fold`'s rows, and whether their keys are known to be distinct."""
        key, increment, coalesce, others = self.key, self.increment, self.coalesce, self.others
        merged: dict[Any, Mapping[str, Any]] = {}
        owned: set[Any] = set()  # keys whose merged row is a copy this fold may change
        try:
            for row in params:
                k = key(row)
                previous = merged.get(k)
                if previous is None:
                    if k is None or (type(k) is tuple and None in k):
                        return params, False
                    merged[k] = row
                    continue
                if k in owned:
                    acc: dict[str, Any] = previous  # type: ignore[assignment]
                else:
                    acc = merged[k] = dict(previous)
                    owned.add(k)
                for c in increment:
                    a, b = acc[c], row[c]
                    if a is None or b is None:
                        acc[c] = None
                    elif type(a) not in _EXACT or type(b) not in _EXACT:
                        return params, False
                    else:
                        acc[c] = a + b
                for c in coalesce:
                    value = row[c]
                    if value is not None:
                        acc[c] = value
                for c in others:
                    acc[c] = row[c]
        except TypeError:  # an unhashable key value
            return params, False
        return (params if len(merged) == len(params) else list(merged.values())), True

    def tuples(self, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Rows as tuples in :attr:`names` order, through the bind processors."""
        rows = list(map(self.getter, params))
        if self.processed:
            for index, row in enumerate(rows):
                values = list(row)
                for i, processor in self.processed:
                    values[i] = processor(values[i])
                rows[index] = tuple(values)
        return rows

    def rows(self, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Rows as the driver's ``executemany`` takes them."""
        if self.positional:
            return self.tuples(params)
        processors = self.processors
        if not processors:
            return list(params)
        return [
            {k: (processors[k](v) if k in processors else v) for k, v in r.items()} for r in params
        ]


def run_upsert(
    connection: Connection, upsert: DriverUpsert, params: list[Mapping[str, Any]], direct: bool
) -> None:
    """Execute ``params`` (one group of deferred rows) of ``upsert``, merged per key.

    ``direct``: no cursor-execute event listener is installed, so the rows may go straight
    to the DBAPI cursor (by COPY where :mod:`~eventsource.projection.pgcopy` applies)."""
    distinct = True
    if len(params) > 1:
        params, distinct = upsert.merged(params)
    if upsert.via_sqlalchemy:
        connection.execute(upsert.statement, params[0] if len(params) == 1 else params)
        return
    if not direct:
        rows = upsert.rows(params)
        connection.exec_driver_sql(upsert.sql, rows[0] if len(rows) == 1 else rows)
        return
    copy = upsert.copy
    if copy is not None and (not distinct or len(params) < MIN_ROWS or not may_stage(connection)):
        copy = None
    cursor = connection.connection.cursor()
    sql = upsert.sql
    try:
        if copy is not None:
            sql = copy.merge
            copy.run(cursor, upsert.tuples(params))
            return
        rows = upsert.rows(params)
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
    except Exception as exc:
        # a driver error goes through SQLAlchemy's own handling, so it is wrapped
        # (OperationalError ...) and a lost connection is invalidated exactly as usual
        connection._handle_dbapi_exception(exc, sql, params, cursor, None)
    finally:
        cursor.close()
