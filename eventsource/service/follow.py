"""A service follows the live version of its projections (blue/green through the CLI).

``eventsource rebuild --projection-version 2`` builds version 2 beside the live version 1
and swaps the views to it. A service started without ``--projection-version`` follows:

- at start it runs the newer of the code's version and the live one (a service restarted
  after a swap keeps serving the live version);
- while it runs, it reads the live pointer every few seconds; when a newer version has
  become live, the supervisor stops the runner between batches and starts it again on the
  new version, which continues from that version's own checkpoints (the rebuild left them
  where it stopped). No restart, no stale live view.

A live version *older* than the code's is left alone: that is a new deployment building
its version ahead of a swap, and its older replicas still serve the live one.

A service started with ``--projection-version N`` is pinned: it runs version N only and,
while N is not the live version, reports not ready on ``/readyz`` with the reason (a
pinned service that is not live serves nobody; its readiness says so instead of 200).

Switching reuses the code the service runs with the live version's number, exactly what
``rebuild --projection-version N`` did when it built that version from the same code.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from eventsource.projection import Projection
from eventsource.projection.dberrors import database_error
from eventsource.projection.store import create_read_model_engine, live_version, read_only

__all__ = ["VersionFollower", "at_version"]


def at_version(projection: Projection, version: int) -> Projection:
    """The same projection definition at another version (tables, checkpoints, group)."""
    if version == projection.version:
        return projection
    return type(projection)(
        name=projection.name,
        version=version,
        topics=list(projection.topics),
        topic_prefix=projection.topic_prefix,
    )


class VersionFollower:
    """Which version of one projection a service runs, and whether that is still right."""

    def __init__(self, projection: Projection, database_url: str, *, pinned: bool) -> None:
        self.code = projection
        self.pinned = pinned
        self.current = projection
        self._database_url = database_url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _live(self) -> int | None:
        if self._engine is None:
            self._engine = create_read_model_engine(self._database_url)
        try:
            with self._engine.connect() as raw, read_only(raw) as conn:
                return live_version(conn, self.code.name)
        except DBAPIError as exc:
            # The first database contact of a (re)start: a server that is down is a
            # retriable error naming it (/readyz shows it), a refused login a
            # configuration error (exit 2), as everywhere else (projection.dberrors).
            raise database_error(self._engine.url, exc) from exc

    def start(self) -> Projection:
        """The projection to run now (called before every runner start)."""
        with self._lock:
            if not self.pinned:
                live = self._live()
                if live is not None and live > self.current.version:
                    self.current = at_version(self.code, live)
            return self.current

    def check(self) -> tuple[bool, str | None]:
        """(the runner must switch to a newer live version, why this one is not ready)."""
        live = self._live()
        with self._lock:
            running = self.current.version
            if live is None or live == running:
                return False, None
            if self.pinned:
                return False, (
                    f"version {running} is not live (version {live} is): this service "
                    f"runs --projection-version {running}; run the live version, or swap "
                    f"version {running} live"
                )
            return live > running, None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
