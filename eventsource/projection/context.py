"""What a handler gets besides its event: metadata, position, the batch's transaction.

Two ways to write:

- **Immediate**: ``ctx.execute(stmt, params)`` runs a SQLAlchemy Core statement now, on the
  batch's open transaction. Simple; costs one round through SQLAlchemy per statement.
- **Batched**: ``ctx.upsert(table, values, key=[...])`` and ``ctx.defer(stmt, params)``
  collect statements for the whole consume batch and run them as ``executemany`` when the
  batch is flushed (before its checkpoint is written, in the same transaction). Several
  times faster per row. Rows of one upsert with the same key are merged into one row with
  the same effect before they are sent (see ``_DriverUpsert.fold``).

Order is kept where it matters: deferred statements are flushed before any immediate
``execute``; and two deferred statements touching the same table are never reordered
(a statement is only merged into an earlier ``executemany`` group when no other group for
its table came after that group). Statements on different tables may run in an order other
than the handlers' call order; for a text statement (table unknown) nothing is reordered.
Reuse statement objects (module constants or ``ctx.upsert``) so that deferred rows group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, CursorResult, Dialect, Executable, Table

from eventsource.domain import EventMetadata, Position
from eventsource.errors import ConfigurationError
from eventsource.projection.store import upsert_statement

__all__ = ["Context"]

#: increment values that add up exactly in any order (floats do not)
_EXACT = (int, Decimal)


@dataclass(slots=True)
class _Group:
    statement: Any  # an Executable, or a _DriverUpsert
    params: list[Mapping[str, Any]] = field(default_factory=list)


class _DriverUpsert:
    """An upsert compiled once and executed straight on the DBAPI cursor.

    SQLAlchemy's per-row parameter processing costs more than SQLite's own insert; the
    upserts ``ctx.upsert`` builds are simple enough to skip it: the SQL is compiled once,
    and each row only goes through the column types' own bind processors, if any.
    """

    __slots__ = (
        "coalesce",
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
    )

    def __init__(
        self,
        statement: Any,
        table: Table,
        dialect: Dialect,
        spec: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    ) -> None:
        columns, key, increment, coalesce = spec
        #: what :meth:`fold` needs: key getter, increment and coalesce columns among values
        self.key: Callable[[Mapping[str, Any]], Any] = itemgetter(*key)
        self.increment = tuple(c for c in increment if c in columns)
        self.coalesce = tuple(c for c in coalesce if c in columns and c not in increment)
        #: the columns that take the last row's value (the key columns among them)
        self.others = tuple(c for c in columns if c not in increment and c not in self.coalesce)
        compiled = statement.compile(dialect=dialect)
        self.statement = statement
        self.table = table
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        self.names: tuple[str, ...] = tuple(
            compiled.positiontup if self.positional else compiled.binds
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
        key, increment, coalesce, others = self.key, self.increment, self.coalesce, self.others
        merged: dict[Any, Mapping[str, Any]] = {}
        owned: set[Any] = set()  # keys whose merged row is a copy this fold may change
        try:
            for row in params:
                k = key(row)
                previous = merged.get(k)
                if previous is None:
                    if k is None or (type(k) is tuple and None in k):
                        return params
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
                        return params
                    else:
                        acc[c] = a + b
                for c in coalesce:
                    value = row[c]
                    if value is not None:
                        acc[c] = value
                for c in others:
                    acc[c] = row[c]
        except TypeError:  # an unhashable key value
            return params
        return params if len(merged) == len(params) else list(merged.values())

    def rows(self, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        if self.positional:
            rows = list(map(self.getter, params))
            if self.processed:
                for index, row in enumerate(rows):
                    values = list(row)
                    for i, processor in self.processed:
                        values[i] = processor(values[i])
                    rows[index] = tuple(values)
            return rows
        processors = self.processors
        if not processors:
            return list(params)
        return [
            {k: (processors[k](v) if k in processors else v) for k, v in r.items()} for r in params
        ]


class Context:
    """Per-batch handler context. ``meta`` and ``position`` describe the current event."""

    __slots__ = (
        "_barrier",
        "_by_statement",
        "_by_table",
        "_direct",
        "_groups",
        "_last",
        "_position",
        "_tail",
        "_upserts",
        "_where",
        "connection",
        "meta",
        "tables",
    )

    def __init__(
        self,
        connection: Connection,
        tables: Mapping[str, Table],
        statements: dict[tuple[Any, ...], Any] | None = None,
    ) -> None:
        """``statements``: a cache of built upserts shared across batches (same engine)."""
        self.connection = connection
        self.tables = tables
        self.meta: EventMetadata
        self._position: Position | None = None
        self._where: tuple[str, int, int] = ("", -1, -1)
        self._groups: list[_Group] = []
        self._by_statement: dict[int, int] = {}
        self._by_table: dict[str, int] = {}
        self._barrier = -1
        self._direct: bool | None = None  # upserts may skip SQLAlchemy's execution layer
        self._last: Any = None  # the statement of the last group, whose rows are _tail
        self._tail: list[Mapping[str, Any]] = []
        self._upserts: dict[tuple[Any, ...], Any] = {} if statements is None else statements

    def at(self, meta: EventMetadata, topic: str, partition: int, offset: int) -> None:
        """Make ``meta`` and the record at ``topic[partition]@offset`` the current event."""
        self.meta = meta
        self._where = (topic, partition, offset)
        self._position = None

    @property
    def position(self) -> Position:
        """Where the current event's record sits (built when first asked for)."""
        position = self._position
        if position is None:
            position = self._position = Position(*self._where)
        return position

    @position.setter
    def position(self, position: Position) -> None:
        self._position = position

    # immediate ------------------------------------------------------------------------
    def execute(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        """Run ``statement`` now (after flushing deferred statements, to keep order)."""
        self.flush()
        if params is None:
            return self.connection.execute(statement)
        return self.connection.execute(statement, params)

    # batched --------------------------------------------------------------------------
    def defer(self, statement: Executable, params: Mapping[str, Any]) -> None:
        """Queue ``statement`` with ``params`` for the batch's ``executemany`` flush."""
        self._queue(statement, params)

    def _queue(self, statement: Any, params: Mapping[str, Any]) -> None:
        if statement is self._last:  # the common case: same statement as the last row
            self._tail.append(params)
            return
        table = getattr(statement, "table", None)
        table_name = table.name if isinstance(table, Table) else None
        index = self._by_statement.get(id(statement))
        if index is not None:
            if table_name is None:
                mergeable = index == len(self._groups) - 1
            else:
                mergeable = index > self._barrier and self._by_table.get(table_name) == index
            if mergeable:
                self._groups[index].params.append(params)
                return
        index = len(self._groups)
        self._tail = [params]
        self._groups.append(_Group(statement, self._tail))
        self._last = statement
        self._by_statement[id(statement)] = index
        if table_name is None:
            self._barrier = index
        else:
            self._by_table[table_name] = index

    def upsert(
        self,
        table: Table | str,
        values: Mapping[str, Any],
        *,
        key: Sequence[str],
        increment: Sequence[str] = (),
        coalesce: Sequence[str] = (),
        immediate: bool = False,
    ) -> None:
        """Insert-or-update of one row keyed by the ``key`` columns, deferred to the flush.

        On conflict, other columns take the new values, except those in ``increment``,
        which are added to the stored value (``balance = balance + :balance``), and those
        in ``coalesce``, which keep the stored value when the new one is None. With
        ``immediate=True`` the statement runs now (the per-event path).
        """
        if isinstance(table, str):
            try:
                table = self.tables[table]
            except KeyError:
                raise ConfigurationError(
                    f"no table {table!r} in this projection; declared: {sorted(self.tables)}"
                ) from None
        # one flat tuple (None between the parts: column names are strings)
        cache_key = (table.name, *values, None, *key, None, *increment, None, *coalesce)
        statement = self._upserts.get(cache_key)
        if statement is None:
            dialect = self.connection.dialect
            spec = (tuple(values), tuple(key), tuple(increment), tuple(coalesce))
            statement = _DriverUpsert(
                upsert_statement(dialect.name, table, spec[0], key, increment, coalesce),
                table,
                dialect,
                spec,
            )
            self._upserts[cache_key] = statement
        if immediate:
            self.flush()
            self._run(statement, [values])
        elif statement is self._last:  # _queue's common case, inlined
            self._tail.append(values)
        else:
            self._queue(statement, values)

    @property
    def pending(self) -> int:
        """Number of deferred rows not yet flushed."""
        return sum(len(g.params) for g in self._groups)

    def flush(self) -> None:
        """Execute the deferred statements, each group as one ``executemany``."""
        if not self._groups:
            return
        groups, self._groups = self._groups, []
        self._by_statement.clear()
        self._by_table.clear()
        self._barrier = -1
        self._last = None
        for group in groups:
            self._run(group.statement, group.params)

    def _run(self, statement: Any, params: list[Mapping[str, Any]]) -> None:
        if isinstance(statement, _DriverUpsert):
            rows = statement.rows(statement.fold(params) if len(params) > 1 else params)
            if self._direct is None:
                dispatch = self.connection.dispatch
                self._direct = not (dispatch.before_cursor_execute or dispatch.after_cursor_execute)
            if self._direct:
                _execute_direct(self.connection, statement.sql, rows)
            elif len(rows) == 1:
                self.connection.exec_driver_sql(statement.sql, rows[0])
            else:
                self.connection.exec_driver_sql(statement.sql, rows)
        elif len(params) == 1:
            self.connection.execute(statement, params[0])
        else:
            self.connection.execute(statement, params)

    def discard(self) -> None:
        """Forget deferred statements (their transaction is being rolled back)."""
        self._groups.clear()
        self._by_statement.clear()
        self._by_table.clear()
        self._barrier = -1
        self._last = None


def _execute_direct(connection: Connection, sql: str, rows: list[Any]) -> None:
    """Run a compiled upsert on the DBAPI cursor of ``connection``'s open transaction.

    SQLAlchemy's per-statement machinery costs several times the database's own work for
    a one-row upsert (the per-event path). Used only when no cursor-execute event listener
    is installed; a driver error goes through SQLAlchemy's own handling, so it is wrapped
    (``OperationalError`` ...) and a lost connection is invalidated exactly as usual.
    """
    cursor = connection.connection.cursor()
    try:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
    except Exception as exc:
        connection._handle_dbapi_exception(exc, sql, rows, cursor, None)
    finally:
        cursor.close()
