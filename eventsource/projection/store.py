"""The read-model database: engines, versioned tables, live views and upserts.

One SQL layer for SQLite and PostgreSQL (SQLAlchemy 2 Core):

- SQLite: a file path or ``sqlite:///path``. WAL journal, ``synchronous=NORMAL`` (a
  committed transaction survives a process crash; only an OS crash can lose the last few,
  and then the checkpoint is lost with them, so the pair stays consistent), a busy timeout,
  and ``BEGIN IMMEDIATE`` so that concurrent writers queue instead of failing.
- PostgreSQL: ``postgresql+psycopg://...``; ``postgres://`` and ``postgresql://`` (as
  hosting platforms hand them out) mean the same psycopg 3 driver.

A SQLite file's directory must exist (a typo there is a configuration error, not a
retry), except the default ``.eventsource/`` directory, which is created.

Tables of a projection carry its name and version (``balances_v1_accounts``); the view
``balances_accounts`` shows the live version. ``eventsource_projections`` records the live
version per projection; :func:`set_live_version` swaps views and pointer in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.sql.dml import Insert

from eventsource.errors import ConfigurationError, DatabaseNotFoundError
from eventsource.projection.dberrors import database_error, describe_database, remember_database
from eventsource.projection.definition import Projection
from eventsource.projection.tables import DDL_LOCK, FRAMEWORK_METADATA, projections_table

__all__ = [
    "create_read_model_engine",
    "ensure_schema",
    "live_version",
    "projections_table",
    "read_model_url",
    "read_only",
    "set_live_version",
    "upsert_statement",
]

_READ_ONLY = "eventsource_read_only"

#: The directory of the default SQLite database; created when missing.
DEFAULT_SQLITE_DIR = ".eventsource"


def read_model_url(database_url: str | Path) -> URL:
    """The SQLAlchemy URL of a read-model database; ConfigurationError if unusable.

    A bare path means SQLite; ``postgres://`` and ``postgresql://`` mean psycopg 3.
    """
    text = str(database_url)
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser().absolute()}"
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"the read-model database URL is not valid ({exc}): use a SQLite path, "
            "sqlite:///path or postgresql://user@host:5432/db"
        ) from exc
    if url.drivername in {"postgres", "postgresql"}:
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigurationError(
            f"read-model database {url.render_as_string(hide_password=True)!r} is not "
            "supported: use a SQLite path, sqlite:///path or postgresql://user@host/db"
        )
    return url


def _sqlite_directory(url: URL) -> None:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return
    directory = Path(url.database).expanduser().absolute().parent
    if directory.is_dir():
        return
    if directory.name == DEFAULT_SQLITE_DIR and directory.parent.is_dir():
        directory.mkdir(exist_ok=True)
        return
    raise ConfigurationError(
        f"read-model database {describe_database(url)} cannot be opened: directory "
        f"{directory} does not exist; create the directory (mkdir -p {directory}) or point "
        "-d / EVENTSOURCE_DATABASE_URL at another path"
    )


def create_read_model_engine(database_url: str | Path, *, must_exist: bool = False) -> Engine:
    """An engine for a SQLite path / URL or a PostgreSQL URL (see the module docstring).

    ``must_exist`` (read-only callers): a SQLite file that does not exist raises
    DatabaseNotFoundError instead of being created by the first connection.
    """
    url = read_model_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if must_exist:
            _check_sqlite_exists(url.database)
        else:
            _sqlite_directory(url)
        engine = create_engine(url, connect_args={"timeout": 60, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "handle_error", remember_database(url))
    return engine


def _check_sqlite_exists(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in-memory or a URI filename: nothing on disk to check
    path = Path(database).expanduser().absolute()
    if not path.is_file():
        raise DatabaseNotFoundError(
            f"read-model database {path} does not exist: point --database-url (or "
            "EVENTSOURCE_DATABASE_URL) at the database the projections write; it is created "
            "by `eventsource run`, `replay` or `rebuild`, never by a read-only command"
        )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # pysqlite's own transaction handling is off (isolation_level=None); take the write
    # lock up front so two writers queue on the busy timeout instead of deadlocking.
    # Readers (see read_only) begin deferred: in WAL mode they never block the writer.
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN DEFERRED")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def read_only(connection: Connection) -> Connection:
    """Mark a connection as a reader: on SQLite it then takes no write lock."""
    return connection.execution_options(**{_READ_ONLY: True})


def ensure_schema(engine: Engine, projection: Projection) -> int:
    """Create the framework tables and this version's tables; make it live if none is.

    Returns the live version. Safe to call concurrently from several processes. A database
    that cannot be used raises an error naming it and the fix (:func:`database_error`).
    """
    try:
        return _ensure_schema(engine, projection)
    except DBAPIError as exc:
        raise database_error(engine.url, exc) from exc


def _ensure_schema(engine: Engine, projection: Projection) -> int:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's
            # catalog; one schema change at a time (lock released at commit).
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({DDL_LOCK})")
        FRAMEWORK_METADATA.create_all(conn, checkfirst=True)
        projection.metadata.create_all(conn, checkfirst=True)
        live = live_version(conn, projection.name)
        if live is None:
            _point_views(conn, projection, projection.version)
            conn.execute(
                projections_table.insert().values(
                    projection=projection.name, live_version=projection.version
                )
            )
            live = projection.version
    return live


def live_version(conn: Connection, projection_name: str) -> int | None:
    """The version whose tables the views show, or None before the first run."""
    if not conn.dialect.has_table(conn, projections_table.name):
        return None
    row = conn.execute(
        select(projections_table.c.live_version).where(
            projections_table.c.projection == projection_name
        )
    ).first()
    return None if row is None else int(row[0])


def set_live_version(conn: Connection, projection: Projection, version: int) -> None:
    """Point the views at ``version``'s tables, inside the caller's transaction.

    SQLite and PostgreSQL both have transactional DDL, so readers see the old views until
    the transaction commits and the new ones after: never a missing or half-built model.
    """
    _point_views(conn, projection, version)
    updated = conn.execute(
        projections_table.update()
        .where(projections_table.c.projection == projection.name)
        .values(live_version=version)
    )
    if updated.rowcount == 0:
        conn.execute(
            projections_table.insert().values(projection=projection.name, live_version=version)
        )


def _point_views(conn: Connection, projection: Projection, version: int) -> None:
    quote = conn.dialect.identifier_preparer.quote
    for logical in projection.tables:
        view = quote(projection.view_name(logical))
        source = quote(projection.physical_name(logical, version))
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")
        conn.exec_driver_sql(f"CREATE VIEW {view} AS SELECT * FROM {source}")  # noqa: S608


def upsert_statement(
    dialect_name: str,
    table: Table,
    columns: Sequence[str],
    key: Sequence[str],
    increment: Sequence[str] = (),
    coalesce: Sequence[str] = (),
    *,
    source: Select[Any] | None = None,
) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` for SQLite or PostgreSQL.

    Non-key columns are overwritten with the new values; columns in ``increment`` are
    added to the stored value instead (counters, balances). ``source`` (PostgreSQL): insert
    the rows of this select, in ``columns`` order, instead of one row of parameters.
    """
    if dialect_name == "sqlite":
        stmt: Any = sqlite.insert(table)
    elif dialect_name == "postgresql":
        stmt = postgresql.insert(table)
        if source is not None:
            stmt = stmt.from_select(list(columns), source)
    else:
        raise ConfigurationError(f"upserts are not supported on {dialect_name!r}")
    missing = [c for c in (*columns, *key, *increment, *coalesce) if c not in table.c]
    if missing:
        raise ConfigurationError(f"table {table.name!r} has no column(s) {missing}")
    if not set(key) <= set(columns):
        raise ConfigurationError(
            f"upsert into {table.name!r}: key {list(key)} must be in the values"
        )
    excluded: Mapping[str, Any] = stmt.excluded
    updates = {
        c: _update_value(table, excluded, c, increment, coalesce) for c in columns if c not in key
    }
    if not updates:
        return stmt.on_conflict_do_nothing(index_elements=list(key))  # type: ignore[no-any-return]
    return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)  # type: ignore[no-any-return]


def _update_value(
    table: Table, excluded: Any, column: str, increment: Sequence[str], coalesce: Sequence[str]
) -> Any:
    if column in increment:
        return table.c[column] + excluded[column]
    if column in coalesce:
        return func.coalesce(excluded[column], table.c[column])
    return excluded[column]
