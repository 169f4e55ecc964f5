"""The append server's backlog: bounded, and rid of requests whose clients gave up.

Without a bound, an owner that falls behind queues every request it consumes, and executes
requests whose clients stopped waiting long ago (they were told ``UncertainCommitError``
and may well have retried). So:

* at most ``max_pending`` requests are in flight; one more is refused at once with the
  retriable :class:`~eventsource.errors.OverloadedError` (nothing was written);
* every request carries its client's deadline (``expires_at_ms``); at the deadline its
  future is cancelled, which succeeds only while the request still waits (in the writer's
  queue, or the executor's): such a request never reaches a transaction.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable
from concurrent.futures import Future

from eventsource.errors import OverloadedError, StoreUnavailableError
from eventsource.store.port import AppendResult

__all__ = ["Backlog", "Tracked", "expired_error"]

_SPARE = 64
"""Done entries the deadline heap may hold beyond twice the requests in flight."""


def expired_error(request_id: str, aggregate_id: str) -> StoreUnavailableError:
    """What an expired request is answered with (its client has stopped listening)."""
    return StoreUnavailableError(
        f"request {request_id} for {aggregate_id!r} passed its client's deadline before it "
        "reached the writer; it was dropped, nothing was written"
    )


class Tracked:
    """A request in the backlog: its future until it is finished, then ``None``."""

    __slots__ = ("future",)

    def __init__(self, future: Future[AppendResult]) -> None:
        self.future: Future[AppendResult] | None = future


class Backlog:
    """Requests in flight at the owner, bounded, each with its client's deadline."""

    def __init__(self, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self.in_flight = 0
        self.expired = 0
        """Requests dropped at their deadline before they reached the writer (a counter)."""
        self._deadlines: list[tuple[int, int, Tracked]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self.idle = threading.Condition(self._lock)

    def refusal(self, aggregate_id: str, admitted: int = 0) -> OverloadedError | None:
        """``OverloadedError`` if the backlog is full; else the request may be executed.

        ``admitted``: requests already let in but not tracked yet (the server starts a
        batch's appends together), counted as in flight.
        """
        return None if admitted < self.room() else self.overloaded(aggregate_id)

    def room(self) -> int:
        """How many more requests may be let in now (a batch asks once, not per request)."""
        with self._lock:
            return self.max_pending - self.in_flight

    def overloaded(self, aggregate_id: str) -> OverloadedError:
        """The answer to a request beyond :attr:`max_pending`."""
        return OverloadedError(
            f"the owner has {self.max_pending} appends in flight (its max_pending); the "
            f"request for {aggregate_id!r} was refused, nothing was written: retry shortly"
        )

    def track(self, future: Future[AppendResult], expires_at_ms: int) -> Tracked:
        """Count ``future`` in flight until :meth:`finished`; cancel it at ``expires_at_ms``.

        The caller says when the request is finished (its answer sent): the backlog adds no
        callback of its own to the future (one lock of the store's per request, not two).
        Finished requests leave the deadline heap once they outnumber those in flight (a
        rebuild, amortised over as many requests): under steady load the heap never empties,
        and would otherwise keep every answered request, result and all, until its client's
        deadline (seconds of traffic, which the garbage collector walks again and again).
        """
        return self.track_all(((future, expires_at_ms),))[0]

    def finished(self, tracked: Tracked) -> None:
        """The request ``tracked`` names is answered: no longer in flight."""
        self.finished_all((tracked,))

    def finished_all(self, tracked: Iterable[Tracked]) -> None:
        """The requests named are answered (a batch of replies: one acquisition)."""
        with self.idle:
            for entry in tracked:
                if entry.future is None:
                    continue  # said twice: counted once
                entry.future = None
                self.in_flight -= 1
            if not self.in_flight:
                self._deadlines.clear()
            self.idle.notify_all()

    def track_all(self, entries: Iterable[tuple[Future[AppendResult], int]]) -> list[Tracked]:
        """:meth:`track` for several requests (futures and deadlines) under one lock."""
        tracked = []
        with self._lock:
            deadlines, order = self._deadlines, self._order
            for future, expires_at_ms in entries:
                entry = Tracked(future)
                tracked.append(entry)
                heapq.heappush(deadlines, (expires_at_ms, next(order), entry))
            self.in_flight += len(tracked)
            if len(deadlines) > 2 * self.in_flight + _SPARE:
                deadlines[:] = [entry for entry in deadlines if entry[2].future is not None]
                heapq.heapify(deadlines)
        return tracked

    @property
    def tracked(self) -> int:
        """Entries in the deadline heap (in flight, and answered ones not yet dropped)."""
        with self._lock:
            return len(self._deadlines)

    def expire(self, now_ms: float) -> None:
        """Cancel every waiting request whose deadline has passed (cheap when none has)."""
        expired: list[Future[AppendResult]] = []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] < now_ms:
                future = heapq.heappop(self._deadlines)[2].future
                if future is not None:
                    expired.append(future)
        for future in expired:
            if future.cancel():  # only a request no writer has started: nothing written
                with self._lock:
                    self.expired += 1

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout=timeout)
