"""Pausing the cyclic garbage collector while a batch is consumed and applied."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused", "gc_resumed"]

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False
_held = threading.local()  # .depth: the pauses the current thread holds


def _pause() -> None:
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1


def _resume() -> None:
    global _gc_pausers
    with _gc_lock:
        _gc_pausers -= 1
        if _gc_pausers == 0 and _gc_was_enabled:
            gc.enable()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is consumed and applied
    (process-wide; nested and concurrent uses are counted, the collector is resumed when
    the last one ends).

    A consume batch keeps tens of thousands of container objects alive (records, their
    headers, deferred rows): the collections that their allocations set off would traverse
    them again and again, and promote them to the old generations that full collections
    traverse (an eighth of the batch path's time, and more). Reference counting still
    frees everything at once; cycles wait for the next collection. Waits inside a pause
    (a database retry's backoff, the careful path) resume it: :func:`gc_resumed`.
    """
    _pause()
    _held.depth = getattr(_held, "depth", 0) + 1
    try:
        yield
    finally:
        _held.depth -= 1
        _resume()


@contextmanager
def gc_resumed() -> Iterator[None]:
    """Let the collector run again while the current thread waits inside its
    :func:`gc_paused` (nothing happens outside one): a pause never lasts a backoff."""
    depth = getattr(_held, "depth", 0)
    for _ in range(depth):
        _resume()
    _held.depth = 0
    try:
        yield
    finally:
        for _ in range(depth):
            _pause()
        _held.depth = depth
