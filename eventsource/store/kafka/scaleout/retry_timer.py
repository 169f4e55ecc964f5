"""Actions run after a delay on one thread: routed appends wait to be sent again there.

A router that slept in a thread per append waiting for its retry would cap the appends in
flight at its thread count, and a rebalance makes every append in flight wait at once. One
thread and a heap of due times hold any number of them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from eventsource.lifecycle import ServiceThread

__all__ = ["RetryTimer"]

log = logging.getLogger(__name__)

Action = Callable[[], None]


class RetryTimer(ServiceThread):
    """Runs each action once, ``delay`` seconds after :meth:`call_later`, on its thread.

    :meth:`close` stops the thread and runs the actions still waiting at once, on the
    closing thread; an action scheduled after that runs at once too. Actions are expected to
    handle their own errors (one that raises is logged, and the others still run).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._due: list[tuple[float, int, Action]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False

    @property
    def waiting(self) -> int:
        """How many actions wait for their time."""
        with self._changed:
            return len(self._due)

    def call_later(self, delay: float, action: Action) -> None:
        with self._changed:
            if not self._closed:
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), action))
                self._changed.notify()
                return
        _run(action)

    def close(self, timeout: float = 30.0) -> None:
        super().close(timeout)
        with self._changed:
            self._closed = True
            rest, self._due = sorted(self._due), []
        for _, _, action in rest:
            _run(action)

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _loop(self) -> None:
        while True:
            with self._changed:
                if self.stopping:
                    return
                now = time.monotonic()
                if not self._due or self._due[0][0] > now:
                    self._changed.wait(self._due[0][0] - now if self._due else None)
                    continue
                action = heapq.heappop(self._due)[2]
            _run(action)


def _run(action: Action) -> None:
    try:
        action()
    except Exception:  # one failing action must not stop the others
        log.exception("retry action %r failed", action)
