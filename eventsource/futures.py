"""Reading a finished :class:`concurrent.futures.Future` without taking its lock.

A future that has finished never changes again, and its done callbacks run after it
finished: code that was handed a future by its done callback may read the outcome
directly. The Kafka stores' futures share their partition writer's lock (and one
``Future`` method call takes it once or more), so a burst of completions read through
``cancelled()`` / ``exception()`` / ``result()`` contends with the writer for nothing.
Used where completions are read in bulk: the asyncio bridge and the routing server's
reply outbox.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED
from typing import Final, TypeVar

__all__ = ["CANCELLED_STATES", "done_outcome"]

T = TypeVar("T")

CANCELLED_STATES: Final = (CANCELLED, CANCELLED_AND_NOTIFIED)
"""The states of a cancelled future (``Future._state``)."""


def done_outcome(future: Future[T]) -> tuple[T | None, BaseException | None] | None:
    """``None`` if the done ``future`` was cancelled, else ``(result, error)``, read
    without its lock. Only for a future known to be done (its done callback ran)."""
    if future._state in CANCELLED_STATES:
        return None
    return future._result, future._exception
