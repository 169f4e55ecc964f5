"""Read-your-writes for asyncio code: await a projection passing given positions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor

from sqlalchemy import Engine

from eventsource.domain import Position
from eventsource.projection.definition import Projection
from eventsource.projection.store import create_read_model_engine
from eventsource.projection.wait import PositionsWait

__all__ = ["wait_for_positions"]


async def wait_for_positions(
    projection: Projection | str,
    database_url: str | Engine,
    positions: Sequence[Position],
    timeout: float = 10.0,
    *,
    poll_interval: float = 0.02,
    executor: Executor | None = None,
) -> None:
    """Return once the projection's checkpoints are past every position; else raise
    ``WaitTimeoutError`` after ``timeout`` seconds.

    The async twin of :func:`eventsource.projection.wait_for_positions`: each read of the
    checkpoints runs in ``executor`` (``None``: the loop's default), the pauses between
    reads are ``asyncio.sleep``, so the loop serves other requests meanwhile. Cancelling
    the awaiting task stops the wait (it writes nothing). Pass an ``Engine`` to reuse its
    connections across calls; a URL gets an engine for this call only.
    """
    wait = PositionsWait(projection, positions)
    if not wait.needed:
        return
    loop = asyncio.get_running_loop()
    owned = isinstance(database_url, str)
    engine = (
        await loop.run_in_executor(executor, create_read_model_engine, database_url)
        if isinstance(database_url, str)
        else database_url
    )
    deadline = time.monotonic() + timeout
    try:
        while not await loop.run_in_executor(executor, wait.check, engine):
            if time.monotonic() >= deadline:
                raise wait.timeout_error(timeout)
            await asyncio.sleep(poll_interval)
    finally:
        if owned:
            engine.dispose()
