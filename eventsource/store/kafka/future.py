"""The future an append returns: a ``concurrent.futures.Future`` that costs less per append.

A plain :class:`~concurrent.futures.Future` builds its own ``threading.Condition`` (a lock,
a waiter queue and five bound methods) and takes it once to start and once to resolve; for
a one-event append that was a fifth of the store's Python time. :class:`AppendFuture`
shares its partition writer's condition instead, and the writer starts and resolves a
whole group commit's futures under one acquisition of it (:func:`start_all`,
:func:`resolve_all`), then runs their callbacks outside it, like ``set_result`` does.

It *is* a ``Future`` (``isinstance``, ``result``, ``exception``, ``cancel``,
``add_done_callback``, ``concurrent.futures.wait`` and ``as_completed`` all work) with one
difference inside: ``notify_all`` on the shared condition wakes every thread blocked on
any of the writer's futures, so :meth:`AppendFuture.result` and
:meth:`AppendFuture.exception` wait in a loop until their own future is done or the
timeout has passed, where ``Future``'s wait once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures._base import (  # Future's states, and the logger of its callbacks
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import Any

from eventsource.futures import CANCELLED_STATES
from eventsource.store.port import AppendResult

__all__ = ["AppendFuture", "resolve_all", "start_all"]


_Callback = Callable[[Future[AppendResult]], object]
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class AppendFuture(Future[AppendResult]):
    """A ``Future[AppendResult]`` guarded by its writer's ``condition`` (shared)."""

    _waiting: list[Any] | None = None  # made on first use: waiting with wait() is rare
    _callbacks: _Callback | list[_Callback] | None = None
    """No callback, the only one (the usual case: no list kept alive per append), or a list."""
    # Future's state starts from these class-level values (set per instance once it changes):
    # nothing to store per append before the writer starts it.
    _state = PENDING
    _result: AppendResult | None = None
    _exception: BaseException | None = None

    def __init__(self, condition: threading.Condition | None = None) -> None:
        # Future.__init__ is not called: it would build the condition this class shares,
        # and two lists most appends never use (they stay alive, and are collected, with
        # every append in flight).
        self._condition = threading.Condition() if condition is None else condition

    @property
    def _waiters(self) -> list[Any]:  # Future's methods, wait() and as_completed() use it
        if self._waiting is None:
            self._waiting = []
        return self._waiting

    @_waiters.setter
    def _waiters(self, waiters: list[Any]) -> None:
        self._waiting = waiters

    @property
    def _done_callbacks(self) -> list[_Callback]:  # for Future's own methods, if any use it
        callbacks = self._callbacks
        if not isinstance(callbacks, list):
            callbacks = self._callbacks = [] if callbacks is None else [callbacks]
        return callbacks

    def add_done_callback(self, fn: _Callback) -> None:
        with self._condition:
            if self._state not in _DONE:
                callbacks = self._callbacks
                if callbacks is None:
                    self._callbacks = fn
                elif isinstance(callbacks, list):
                    callbacks.append(fn)
                else:
                    self._callbacks = [callbacks, fn]
                return
        _call(fn, self)

    def _invoke_callbacks(self) -> None:
        callbacks = self._callbacks
        if callbacks is None:
            return
        for callback in callbacks if isinstance(callbacks, list) else (callbacks,):
            _call(callback, self)

    def result(self, timeout: float | None = None) -> AppendResult:
        if self._state == FINISHED and self._exception is None:
            # Resolved (the usual case once a callback ran): resolve_all stores the result
            # before the state, under the GIL, so the result is there without the lock.
            result = self._result
            assert result is not None
            return result
        with self._condition:
            self._await(timeout)
            error = self._exception
            if error is None:
                assert self._result is not None  # FINISHED without an error: a result
                return self._result
        try:
            raise error
        finally:
            del error  # no reference cycle through the traceback

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with self._condition:
            self._await(timeout)
            return self._exception

    def _await(self, timeout: float | None) -> None:
        """Wait (holding the condition) until done; cancelled or timed out: raise."""
        if self._state not in _DONE:
            self._condition.wait_for(lambda: self._state in _DONE, timeout)
        if self._state in CANCELLED_STATES:
            raise CancelledError()
        if self._state != FINISHED:
            raise FutureTimeout()


def _call(callback: _Callback, future: AppendFuture) -> None:
    """Run one done-callback as ``Future`` does: an exception is logged, never raised."""
    try:
        callback(future)
    except Exception:
        LOGGER.exception("exception calling callback for %r", future)


def start_all(condition: threading.Condition, futures: Sequence[AppendFuture]) -> list[bool]:
    """``set_running_or_notify_cancel`` of each future, under one acquisition of ``condition``
    (the caller may hold it already): ``False`` for those a caller cancelled."""
    started = []
    with condition:
        for future in futures:
            if future._state == PENDING:
                future._state = RUNNING
                started.append(True)
            elif future._state == CANCELLED:
                future._state = CANCELLED_AND_NOTIFIED
                for waiter in future._waiting or ():
                    waiter.add_cancelled(future)
                started.append(False)
            else:
                raise RuntimeError(f"append future started twice: {future!r}")
    return started


def resolve_all(
    condition: threading.Condition, outcomes: Sequence[tuple[AppendFuture, AppendResult]]
) -> None:
    """``set_result`` of each started future: one acquisition and one ``notify_all`` for
    all of them, then their callbacks (outside the lock, in order)."""
    with condition:
        for future, result in outcomes:
            if future._state != RUNNING:
                raise RuntimeError(f"append future resolved twice: {future!r}")
            future._result = result
            future._state = FINISHED
            if future._waiting:
                for waiter in future._waiting:
                    waiter.add_result(future)
        condition.notify_all()
    for future, _ in outcomes:
        if future._callbacks is not None:
            future._invoke_callbacks()
