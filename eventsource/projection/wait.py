"""Read-your-writes: wait until a projection has applied given positions."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Engine

from eventsource.domain import Position
from eventsource.errors import WaitTimeoutError
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.definition import Projection, validate_identifier
from eventsource.projection.store import create_read_model_engine, live_version, read_only

__all__ = ["wait_for_positions"]


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
    engine = (
        create_read_model_engine(database_url) if isinstance(database_url, str) else database_url
    )
    if isinstance(projection, Projection):
        name, version = projection.name, projection.version
    else:
        name, version = validate_identifier(projection, "projection name"), None
    needed: dict[tuple[str, int], int] = {}
    for position in positions:
        tp = (position.topic, position.partition)
        needed[tp] = max(needed.get(tp, 0), position.offset + 1)
    deadline = time.monotonic() + timeout
    missing = dict(needed)
    try:
        while True:
            with engine.connect() as raw, read_only(raw) as conn:
                live = live_version(conn, name)  # None: the projection never ran here
                if version is not None and live is not None:
                    live = version
                stored = {} if live is None else read_checkpoints(conn, name, live, needed)
            missing = {tp: o for tp, o in needed.items() if stored.get(tp, 0) < o}
            if not missing:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(poll_interval)
    finally:
        if isinstance(database_url, str):
            engine.dispose()
    detail = ", ".join(
        f"{t}[{p}]@{o - 1} (checkpoint {stored.get((t, p), 0)})"
        for (t, p), o in sorted(missing.items())
    )
    raise WaitTimeoutError(
        f"projection {name!r} did not pass {detail} within {timeout}s: is its runner "
        "running and healthy? (eventsource status shows its lag)"
    )
