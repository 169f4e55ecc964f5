"""The one bridge from the threaded core's futures to an asyncio event loop.

A store's ``append_async`` returns a :class:`concurrent.futures.Future` that a writer (or a
reply listener) thread completes. :func:`await_future` hands that completion to the loop
with :meth:`asyncio.AbstractEventLoop.call_soon_threadsafe` from the future's done
callback: no thread of an executor waits on the future, and nothing on the loop blocks.

Completions are batched per loop: a group commit completes hundreds of futures in one
burst on the writer's thread, and they reach the loop through a single wake-up instead of
one self-pipe write each. What a burst costs on the loop is kept to what asyncio itself
needs (measured in docs/benchmarks.md, "Async facade"):

- a done store future is read without its lock: a future that has finished never changes,
  and its done callback (which queued it) ran after it finished;
- the awaiting task is woken in the drain itself, in its own context, instead of through
  one more ``call_soon`` handle and loop pass per completion (not with the loop in debug
  mode, whose slow-callback report would then name the drain). The task's wake-up is the
  one callback on the waiter, read from asyncio's ``Future._callbacks`` (the C and the
  Python futures both have it; without it, or with any other number of callbacks, the
  waiter is simply given its outcome). A drain serves only the
  completions queued when it began: a task whose next future is done at once (the
  in-memory store) waits for the next drain like everyone else.

Cancellation never travels back. The awaiting task may be cancelled (a client hung up, a
timeout fired); the store's future is left alone, because cancelling it would be a lie for
an append that has started (it commits anyway) or been sent to an owner (it executes
anyway). The commit runs to its end and its outcome is what the store reports afterwards
(reload the aggregate: its version tells).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from eventsource.futures import done_outcome

__all__ = ["await_future"]

T = TypeVar("T")

_Completion = tuple["asyncio.Future[Any]", "Future[Any]"]
_Put = Callable[["asyncio.Future[Any]", "Future[Any]"], None]


class _Inbox:
    """Completed store futures waiting to be copied onto one loop's futures.

    Lock-free (``deque.append`` and ``popleft`` are atomic): the drain clears
    ``_scheduled`` *before* it counts the deque, so a completion queued while it runs is
    either served by it or finds ``_scheduled`` false and wakes the loop again.
    """

    __slots__ = ("__weakref__", "_items", "_scheduled")

    def __init__(self) -> None:
        # No reference to the loop (the waiters have it): ``_inboxes`` holds inboxes by
        # weak key, and a value holding its key would keep every loop that ever awaited a
        # store future alive.
        self._items: deque[_Completion] = deque()
        self._scheduled = False

    def put(self, waiter: asyncio.Future[Any], future: Future[Any]) -> None:
        """From any thread: queue a completion and wake the loop unless a wake-up is due."""
        self._items.append((waiter, future))
        if self._scheduled:
            return
        self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
            waiter.get_loop().call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        items = self._items
        count = len(items)
        if not count:
            return
        wake = not items[0][0].get_loop().get_debug()
        try:
            for _ in range(count):
                waiter, future = items.popleft()
                if not waiter.done():  # done: the awaiting task was cancelled
                    _settle(waiter, future, wake)
                count -= 1
        finally:
            if count and not self._scheduled:  # a task's step raised SystemExit: go on later
                self._scheduled = True
                self._drain_later(items[0][0])

    def _drain_later(self, waiter: asyncio.Future[Any]) -> None:
        waiter.get_loop().call_soon(self._drain)


def _settle(waiter: asyncio.Future[Any], future: Future[Any], wake: bool) -> None:
    """Give ``waiter`` the outcome of the done ``future``; with ``wake``, step its task now."""
    outcome = done_outcome(future)
    if outcome is None:
        waiter.cancel()
        return
    step: Callable[[asyncio.Future[Any]], object] | None = None
    callbacks = getattr(waiter, "_callbacks", None) if wake else None
    if callbacks is not None and len(callbacks) == 1:  # the awaiting task's wake-up
        step, context = callbacks[0]
        waiter.remove_done_callback(step)
    result, error = outcome
    if error is None:
        waiter.set_result(result)
    else:
        waiter.set_exception(error)
    if step is not None:
        context.run(step, waiter)


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_inboxes_lock = threading.Lock()


def _no_loop() -> None:
    return None


class _LastLoop(threading.local):
    """This thread's last loop (weakly) and its inbox's ``put``: a thread runs one loop
    at a time, so most awaits skip the ``_inboxes`` look-up."""

    def __init__(self) -> None:  # once in each thread that uses it
        self.loop: Callable[[], asyncio.AbstractEventLoop | None] = _no_loop
        self.put: _Put | None = None


_last = _LastLoop()


def _put_for(loop: asyncio.AbstractEventLoop) -> _Put:
    with _inboxes_lock:
        inbox = _inboxes.get(loop)
        if inbox is None:
            inbox = _inboxes[loop] = _Inbox()
    _last.put, _last.loop = inbox.put, weakref.ref(loop)
    return inbox.put


async def await_future(future: Future[T]) -> T:
    """The result of a store's future, awaited on the running loop without a thread.

    If the awaiting task is cancelled, ``CancelledError`` is raised in it and ``future``
    is neither cancelled nor waited for: what it was doing goes on to its end.
    """
    loop = asyncio.get_running_loop()
    last = _last
    put = last.put if last.loop() is loop else None
    if put is None:
        put = _put_for(loop)
    waiter: asyncio.Future[T] = loop.create_future()
    future.add_done_callback(partial(put, waiter))
    # Cancelling the awaiting task cancels ``waiter`` only: it is this call's own future,
    # never linked back to ``future``, so the append goes on (a shield without the cost).
    return await waiter
