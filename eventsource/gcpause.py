"""Pausing the cyclic garbage collector while a batch is in flight (shared by every layer).

Projection runners pause it while a consume batch is applied; partition writers while a
group commit is admitted, produced, committed and answered. The pause is process-wide and
counted: the first pauser disables the collector, the last one to leave enables it again.
Threads that overlap their pauses (runners of several projections, the writers of several
partitions: each spends nearly all its time inside one step while busy) may keep the count
from ever reaching zero. Two bounds hold the collector off no longer than that:

* time: once it has been continuously paused for :data:`MAX_PAUSE_S`, the next pause or
  resume by any thread runs one full collection (``gc.collect()``) and the clock starts
  again;
* allocations: once the objects the collector tracks grew by :data:`MAX_PAUSE_ALLOCATIONS`
  (allocations minus deallocations, ``gc.get_count()[0]``) since its last collection, the
  next pause or resume runs a collection of the young generations (``gc.collect(1)``):
  a busy process cannot pile up cyclic garbage faster than that, whatever its rate.

A single pauser pays them only inside a step longer than that (its count reaches zero
between steps); a collector the application disabled stays disabled and is never run.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MAX_PAUSE_ALLOCATIONS", "MAX_PAUSE_S", "gc_paused", "gc_resumed"]

MAX_PAUSE_S = 5.0
"""The longest the collector stays continuously paused (seconds) before the next pause or
resume runs a full collection: cyclic garbage lives at most about this long."""

MAX_PAUSE_ALLOCATIONS = 100_000
"""The most the collector's young generation may grow (tracked objects allocated minus
deallocated, ``gc.get_count()[0]``) during a pause before the next pause or resume collects
the young generations: cyclic garbage made during a pause stays under about this many
objects (a few tens of MB), however fast a busy process makes it."""

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False
_paused_since = 0.0  # time.monotonic() of the pause's start or of its last collection
_held = threading.local()  # .depth: the pauses the current thread holds


def _pause() -> None:
    global _gc_pausers, _gc_was_enabled, _paused_since
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            _paused_since = time.monotonic()
            gc.disable()
            overdue = None
        else:
            overdue = _overdue()
        _gc_pausers += 1
    if overdue is not None:
        gc.collect(overdue)


def _resume() -> None:
    global _gc_pausers
    with _gc_lock:
        _gc_pausers -= 1
        if _gc_pausers == 0:
            if _gc_was_enabled:
                gc.enable()
            return
        overdue = _overdue()
    if overdue is not None:
        gc.collect(overdue)


def _overdue() -> int | None:
    """The generation the caller must collect (outside the lock) because a bound was
    reached, or ``None``: 2 once the pause has lasted :data:`MAX_PAUSE_S` (the clock starts
    again), 1 once the young generation grew by :data:`MAX_PAUSE_ALLOCATIONS` (caller holds
    ``_gc_lock``)."""
    global _paused_since
    if not _gc_was_enabled:
        return None
    now = time.monotonic()
    if now - _paused_since >= MAX_PAUSE_S:
        _paused_since = now
        return 2
    if gc.get_count()[0] >= MAX_PAUSE_ALLOCATIONS:
        return 1
    return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is in flight (process-wide; nested
    and concurrent uses are counted, the collector is resumed when the last one ends).

    A consume batch keeps tens of thousands of container objects alive (records, their
    headers, deferred rows), a group commit thousands (requests, events, folded states):
    the collections that their allocations set off would traverse them again and again,
    and promote them to the old generations that full collections traverse (an eighth of
    the batch path's time, and more). Reference counting still
    frees everything at once; cycles wait for the next collection, at most about
    :data:`MAX_PAUSE_S` (and :data:`MAX_PAUSE_ALLOCATIONS` new objects) when the pauses of
    several threads overlap. Waits inside a pause (a database retry's backoff, the careful
    path, a writer's recovery) resume it: :func:`gc_resumed`.
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
