"""What a handler gets besides its event: metadata, position, the batch's transaction.

Two ways to write:

- **Immediate**: ``ctx.execute(stmt, params)`` runs a SQLAlchemy Core statement now, on the
  batch's open transaction. Simple; costs one round through SQLAlchemy per statement.
- **Batched**: ``ctx.upsert(table, values, key=[...])`` and ``ctx.defer(stmt, params)``
  collect statements for the whole consume batch and run them as ``executemany`` when the
  batch is flushed (before its checkpoint is written, in the same transaction). Several
  times faster per row. Rows of one upsert with the same key are merged into one row with
  the same effect before they are sent (see ``DriverUpsert.fold``); on PostgreSQL a large
  group of merged rows is sent by ``COPY`` (see :mod:`eventsource.projection.pgcopy`).

Order is kept where it matters: deferred statements are flushed before any immediate
``execute``; and two deferred statements touching the same table are never reordered
(a statement is only merged into an earlier ``executemany`` group when no other group for
its table came after that group). Statements on different tables may run in an order other
than the handlers' call order; for a text statement (table unknown) nothing is reordered.
Reuse statement objects (module constants or ``ctx.upsert``) so that deferred rows group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, CursorResult, Executable, Table

from eventsource.domain import EventMetadata, Position
from eventsource.errors import ConfigurationError
from eventsource.projection.upserts import DriverUpsert, run_upsert

__all__ = ["Context"]


@dataclass(slots=True)
class _Group:
    statement: Any  # an Executable, or a DriverUpsert
    params: list[Mapping[str, Any]] = field(default_factory=list)


class Context:
    """Per-batch handler context. ``meta`` and ``position`` describe the current event."""

    __slots__ = (
        "_barrier",
        "_by_statement",
        "_by_table",
        "_call",
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
        #: the last deferred upsert: (table, key, increment, coalesce, columns, statement)
        self._call: tuple[Any, ...] = (None,) * 6
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
        call = self._call
        if (  # the common case: the same upsert as the last one, whose rows are _tail
            table is call[0]
            and not immediate
            and call[5] is self._last
            # the same constant (a tuple) each call is found by identity, no comparison
            and (key is call[1] or key == call[1])
            and (increment is call[2] or increment == call[2])
            and (coalesce is call[3] or coalesce == call[3])
            and values.keys() == call[4]
        ):
            self._tail.append(values)
            return
        named = table
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
            spec = (tuple(values), tuple(key), tuple(increment), tuple(coalesce))
            statement = self._upserts[cache_key] = DriverUpsert(self.connection, table, spec)
        if immediate:
            self.flush()
            self._run(statement, [values])
            return
        if statement is self._last:  # _queue's common case, inlined
            self._tail.append(values)
        else:
            self._queue(statement, values)
        # copies: a caller's list changed later must not match
        self._call = (
            named,
            _copy(key),
            _copy(increment),
            _copy(coalesce),
            frozenset(values),
            statement,
        )

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
        if isinstance(statement, DriverUpsert):
            if self._direct is None:
                # SQLAlchemy's per-statement machinery costs several times the database's
                # own work for a one-row upsert: skipped unless someone listens to it
                dispatch = self.connection.dispatch
                self._direct = not (dispatch.before_cursor_execute or dispatch.after_cursor_execute)
            run_upsert(self.connection, statement, params, self._direct)
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


def _copy(names: Sequence[str]) -> Sequence[str]:
    """``names`` as a value equal to it that nobody else can change."""
    return names if type(names) is tuple else list(names)
