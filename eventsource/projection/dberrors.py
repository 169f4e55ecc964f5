"""Which read-model database errors are worth retrying, and which need a person.

Three kinds, told apart by SQLSTATE where the driver reports one (PostgreSQL), by SQLite's
result code (``sqlite_errorname``) and by the message where neither is reported
(connection failures have no SQLSTATE):

- **transient**: the connection was lost or could not be made, the database is locked or
  busy, a serialization failure or deadlock, the server is shutting down or out of
  connections. The runner retries the whole batch (bounded by its ``max_db_outage_s``).
- **permanent**: the database will give the same answer however often it is asked: a
  missing table or column, a syntax error, no permission, a read-only database. Nothing
  about the record is wrong; the runner stops with a :class:`ProjectionError` that names
  the projection and says what to do.
- anything else (an integrity violation, bad data, and SQLite's generic ``SQLITE_ERROR``
  that is not a missing object or a syntax error: malformed JSON, an integer overflow,
  too many SQL variables): the record's fault; its handler failed, and the projection's
  dead-letter policy decides (the careful path applies records one by one, so the policy
  sees the record that triggered it, and its batch-mates are applied).

:func:`retry_transient` is the one loop that rides out transient errors, for every use of
the database by the runner (batches, checkpoints on assignment, catching up) and by the
read-only callers (status).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from eventsource.errors import ConfigurationError, EventSourceError, ProjectionError
from eventsource.gcpause import gc_resumed

if TYPE_CHECKING:
    from eventsource.projection.definition import Projection

__all__ = [
    "Abandoned",
    "database_error",
    "database_of",
    "describe_database",
    "is_permanent_db_error",
    "is_transient_db_error",
    "outage_error",
    "permanent_error",
    "remember_database",
    "retry_transient",
    "sqlite_errorname",
    "sqlstate",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: SQLSTATE classes / codes of errors that go away by themselves.
_TRANSIENT_CLASSES: Final = ("08", "40", "53")  # connection, transaction rollback, resources
_TRANSIENT_CODES: Final = frozenset({"57P01", "57P02", "57P03", "55P03", "57014"})
#: SQLSTATE classes of errors no retry can fix (syntax / undefined object / privilege,
#: invalid catalog or schema name, read-only transaction, feature not supported).
_PERMANENT_CLASSES: Final = ("42", "3D", "3F", "25", "0A", "28")
#: SQLite result codes (by name prefix, extended codes included) of conditions that pass
#: or concern the database file, never one record: busy, locked, I/O, disk full, cannot
#: open, out of memory, interrupted, lock protocol, corrupt or not a database.
_SQLITE_TRANSIENT: Final = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_NOMEM",
    "SQLITE_INTERRUPT",
    "SQLITE_PROTOCOL",
    "SQLITE_NOLFS",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
)
_PERMANENT_MESSAGE: Final = re.compile(
    r"no such (table|column|function|index|collation|module)|syntax error|"
    r"has no column named|permission denied|not authorized|readonly database|"
    r"read-only|does not exist|unknown database|access denied|authentication failed|"
    r"no pg_hba\.conf entry",
    re.IGNORECASE,
)
_LOGIN: Final = re.compile(
    r"authentication failed|role .* does not exist|no pg_hba\.conf entry", re.IGNORECASE
)
_WHERE = "-d / EVENTSOURCE_DATABASE_URL"


def describe_database(url: URL) -> str:
    """How error messages name a database: the SQLite file, or the URL without password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}" if url.database else "in-memory SQLite"
    return f"PostgreSQL {url.render_as_string(hide_password=True)}"


def remember_database(url: URL) -> Callable[[Any], None]:
    """A ``handle_error`` hook for the engine of ``url``: the errors it wraps carry the URL,
    so whoever reports them can name the database (:func:`database_of`).

    The URL is bound here, not read from the hook's context: SQLAlchemy calls the hook
    without an engine for a pool's pre-ping (a connection dropped while idle), and without
    a wrapped error for exceptions it passes through unchanged (``KeyboardInterrupt`` during
    a query). An exception raised by the hook would replace the one it was called for.
    """

    def remember(context: Any) -> None:
        wrapped = context.sqlalchemy_exception
        if wrapped is not None:
            wrapped.eventsource_database_url = url

    return remember


def database_of(exc: BaseException) -> URL | None:
    """The URL of the read-model database an SQLAlchemy error came from, if known."""
    url = getattr(exc, "eventsource_database_url", None)
    return url if isinstance(url, URL) else None


def _driver_words(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    text = text.split("FATAL:", 1)[-1] if "FATAL:" in text else text
    return " ".join(text.split()).removeprefix("connection failed: ")


def database_error(url: URL, exc: BaseException) -> EventSourceError:
    """The read-model database at ``url`` could not be used: one line naming it and the fix.

    A refused login, a missing database or an unopenable SQLite file is a
    ConfigurationError (no retry helps); an unreachable server is a retriable
    ProjectionError.
    """
    name = describe_database(url)
    words = _driver_words(exc)
    if url.get_backend_name() == "sqlite" and "unable to open" in words:
        return ConfigurationError(
            f"cannot open the read-model database {name}: {words}; check the path and its "
            f"permissions ({_WHERE})"
        )
    if _LOGIN.search(words):
        return ConfigurationError(
            f"the read-model database {name} refused the login: {words}; check the user and "
            f"password in {_WHERE}"
        )
    if is_transient_db_error(exc):
        return ProjectionError(
            f"the read-model database {name} is unavailable: {words}; start it, or check "
            f"the host and port in {_WHERE}",
            retriable=True,
        )
    if is_permanent_db_error(exc):
        return ConfigurationError(
            f"the read-model database {name} cannot be used: {words}; create it or fix {_WHERE}"
        )
    return ProjectionError(f"the read-model database {name} failed: {words}")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE the driver reported for ``exc`` (psycopg), if any."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def sqlite_errorname(exc: BaseException) -> str | None:
    """SQLite's result code name for ``exc`` (``SQLITE_BUSY``...), if SQLite raised it."""
    name = getattr(getattr(exc, "orig", None), "sqlite_errorname", None)
    return name if isinstance(name, str) else None


def is_transient_db_error(exc: BaseException) -> bool:
    """Connection lost, database locked or busy, serialization failure or deadlock:
    retry the batch, do not blame the record."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    if code is not None:
        return code.startswith(_TRANSIENT_CLASSES) or code in _TRANSIENT_CODES
    if not isinstance(exc, OperationalError):
        return False
    name = sqlite_errorname(exc)
    if name is not None:
        return name.startswith(_SQLITE_TRANSIENT)
    message = str(exc.orig) if exc.orig is not None else str(exc)
    # An OperationalError without SQLSTATE is a connection-level failure on PostgreSQL:
    # retry (the runner bounds how long).
    return not _PERMANENT_MESSAGE.search(message)


def is_permanent_db_error(exc: BaseException) -> bool:
    """A database error no retry can fix and no record caused (missing table, syntax,
    permission, read-only database): stop the projection and tell the operator."""
    if not isinstance(exc, DBAPIError) or is_transient_db_error(exc):
        return False
    code = sqlstate(exc)
    if code is not None:
        return code.startswith(_PERMANENT_CLASSES)
    if isinstance(exc, OperationalError | ProgrammingError):
        message = str(exc.orig) if exc.orig is not None else str(exc)
        return isinstance(exc, ProgrammingError) or bool(_PERMANENT_MESSAGE.search(message))
    return False


def permanent_error(projection: Projection, exc: BaseException) -> ProjectionError:
    """The error a runner stops with on a permanent database error: what, and what to do."""
    p = projection
    return ProjectionError(
        f"projection {p.name!r} v{p.version} stopped: the read-model database refused a "
        f"batch with an error no retry can fix: {type(exc).__name__}: "
        f"{getattr(exc, 'orig', None) or exc}. Check that the projection's tables exist "
        "(the runner creates them at start; one dropped since needs a restart or a "
        "rebuild), the SQL its handlers run and the database user's permissions, then "
        "restart: it resumes from its checkpoint"
    )


def outage_error(
    projection: Projection, exc: BaseException, seconds: float, attempts: int, limit: float
) -> ProjectionError:
    """The error a runner gives up with when the database stayed unavailable too long."""
    p = projection
    return ProjectionError(
        f"projection {p.name!r} v{p.version} gave up after the read-model database was "
        f"unavailable for {seconds:.0f}s ({attempts} attempts; max_db_outage_s={limit:g}); "
        f"last error: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}. Check the "
        "database server and the URL, then restart the runner: it resumes from its checkpoint"
    )


class Abandoned(Exception):
    """``stop`` was set while :func:`retry_transient` waited for the database."""


def _ignore(_: BaseException) -> None:
    pass


def _nothing() -> None:
    pass


def retry_transient(
    call: Callable[[], T],
    projection: Projection,
    *,
    doing: str,
    deadline: float | None = None,
    max_outage_s: float | None = None,
    stop: threading.Event | None = None,
    on_error: Callable[[BaseException], None] = _ignore,
    give_up: Callable[[], None] = _nothing,
) -> T:
    """``call()``, again after a growing pause (0.2 s doubling to 5 s) while it fails with a
    transient database error (:func:`is_transient_db_error`), until ``deadline``
    (``time.monotonic()``), ``max_outage_s`` of failures (then :func:`outage_error`) or
    ``stop`` is set (then :class:`Abandoned`). Every failure goes to ``on_error``; any
    other error is raised as it is. ``give_up`` runs before anything is raised.
    ``call`` must be safe to repeat: one transaction that failed as a whole."""
    backoff = 0.2
    first_failure: float | None = None
    attempts = 0
    while True:
        started = time.monotonic()
        try:
            return call()
        except Exception as exc:
            on_error(exc)
            attempts += 1
            first_failure = first_failure or started
            now = time.monotonic()
            if not is_transient_db_error(exc) or (deadline is not None and now > deadline):
                give_up()
                raise
            if max_outage_s is not None and now - first_failure > max_outage_s:
                give_up()
                raise outage_error(
                    projection, exc, now - first_failure, attempts, max_outage_s
                ) from exc
            log.warning("read-model database unavailable, retrying %s: %s", doing, exc)
            with gc_resumed():  # a batch's pause of the collector never lasts a backoff
                if stop is not None and stop.wait(backoff):
                    give_up()
                    raise Abandoned from exc
                if stop is None:
                    time.sleep(backoff)  # bounded by the deadline or max_outage_s
            backoff = min(backoff * 2, 5.0)
