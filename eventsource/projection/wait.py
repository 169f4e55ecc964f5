"""Read-your-writes: wait until a projection has applied given positions."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from eventsource.domain import Position
from eventsource.errors import WaitTimeoutError
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.dberrors import is_transient_db_error
from eventsource.projection.definition import Projection, validate_identifier
from eventsource.projection.store import create_read_model_engine, live_version, read_only

__all__ = ["PositionsWait", "wait_for_positions"]


class PositionsWait:
    """One wait for positions, checked a poll at a time (the sync and async waits share it).

    ``projection`` is a Projection (its own version is awaited) or a projection name (its
    live version is awaited). The read model reflects an event once the checkpoint of its
    partition is greater than its offset.
    """

    def __init__(self, projection: Projection | str, positions: Sequence[Position]) -> None:
        self.version: int | None = None
        if isinstance(projection, Projection):
            self.name, self.version = projection.name, projection.version
        else:
            self.name = validate_identifier(projection, "projection name")
        needed: dict[tuple[str, int], int] = {}
        for position in positions:
            tp = (position.topic, position.partition)
            needed[tp] = max(needed.get(tp, 0), position.offset + 1)
        self.needed = needed
        self.stored: dict[tuple[str, int], int] = {}
        self.missing = dict(needed)
        self.lost: DBAPIError | None = None  #: the last transient database error seen

    def check(self, engine: Engine) -> bool:
        """Read the checkpoints once; True when every position has been passed."""
        if not self.needed:
            return True
        try:
            with engine.connect() as raw, read_only(raw) as conn:
                live = live_version(conn, self.name)  # None: the projection never ran here
                if self.version is not None and live is not None:
                    live = self.version
                stored = (
                    None if live is None else read_checkpoints(conn, self.name, live, self.needed)
                )
                self.stored = stored or {}
        except DBAPIError as exc:
            if not is_transient_db_error(exc):
                raise
            self.lost = exc  # a dropped connection: the next poll asks again
            return False
        self.missing = {tp: o for tp, o in self.needed.items() if self.stored.get(tp, 0) < o}
        return not self.missing

    def timeout_error(self, timeout: float) -> WaitTimeoutError:
        detail = ", ".join(
            f"{t}[{p}]@{o - 1} (checkpoint {self.stored.get((t, p), 0)})"
            for (t, p), o in sorted(self.missing.items())
        )
        lost = "" if self.lost is None else f" (the database failed meanwhile: {self.lost.orig})"
        return WaitTimeoutError(
            f"projection {self.name!r} did not pass {detail} within {timeout}s{lost}: is its "
            "runner running and healthy? (eventsource status shows its lag)"
        )


def wait_for_positions(
    projection: Projection | str,
    database_url: str | Engine,
    positions: Sequence[Position],
    timeout: float = 10.0,
    *,
    poll_interval: float = 0.02,
) -> None:
    """Return once the projection's checkpoints are past every position; else raise
    WaitTimeoutError after ``timeout`` seconds.

    ``projection`` is a Projection (its own version is awaited) or a projection name (its
    live version is awaited). Positions are those an append returned: the read model
    reflects an event once the checkpoint of its partition is greater than its offset.
    """
    wait = PositionsWait(projection, positions)
    engine = (
        create_read_model_engine(database_url) if isinstance(database_url, str) else database_url
    )
    deadline = time.monotonic() + timeout
    try:
        while not wait.check(engine):
            if time.monotonic() >= deadline:
                raise wait.timeout_error(timeout)
            time.sleep(poll_interval)
    finally:
        if isinstance(database_url, str):
            engine.dispose()
