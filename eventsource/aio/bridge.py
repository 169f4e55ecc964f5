"""The one bridge from the threaded core's futures to an asyncio event loop.

A store's ``append_async`` returns a :class:`concurrent.futures.Future` that a writer (or a
reply listener) thread completes. :func:`await_future` hands that completion to the loop
with :meth:`asyncio.AbstractEventLoop.call_soon_threadsafe` from the future's done
callback: no thread of an executor waits on the future, and nothing on the loop blocks.

Completions are batched per loop: a group commit completes hundreds of futures in one
burst on the writer's thread, and they reach the loop through a single wake-up instead of
one self-pipe write each.

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
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

__all__ = ["await_future"]

T = TypeVar("T")

_Completion = tuple["asyncio.Future[Any]", "Future[Any]"]


class _Inbox:
    """Completed store futures waiting to be copied onto one loop's futures.

    Lock-free (``deque.append`` and ``popleft`` are atomic): the drain clears
    ``_scheduled`` *before* it empties the deque, so a completion queued while it runs is
    either emptied by it or finds ``_scheduled`` false and wakes the loop again.
    """

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
        while items:
            waiter, future = items.popleft()
            _copy(future, waiter)


def _copy(future: Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.done():  # the awaiting task was cancelled: nobody wants the outcome
        return
    if future.cancelled():
        waiter.cancel()
        return
    error = future.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(future.result())


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_inboxes_lock = threading.Lock()


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    inbox = _inboxes.get(loop)
    if inbox is None:
        with _inboxes_lock:
            inbox = _inboxes.get(loop)
            if inbox is None:
                inbox = _inboxes[loop] = _Inbox()
    return inbox


async def await_future(future: Future[T]) -> T:
    """The result of a store's future, awaited on the running loop without a thread.

    If the awaiting task is cancelled, ``CancelledError`` is raised in it and ``future``
    is neither cancelled nor waited for: what it was doing goes on to its end.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    future.add_done_callback(partial(_inbox(loop).put, waiter))
    # Cancelling the awaiting task cancels ``waiter`` only: it is this call's own future,
    # never linked back to ``future``, so the append goes on (a shield without the cost).
    return await waiter
