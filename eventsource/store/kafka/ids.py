"""Event ids: version 4 UUID strings, unique, cheap enough for the append hot path.

``str(uuid.uuid4())`` costs about 2 µs (it reads ``os.urandom``, which releases the GIL, so
under load every call also waits to get it back). Event ids need uniqueness, not secrecy:
each process draws 74 random bits once (again after a fork, and whenever its counter runs
out) and appends a 48-bit counter. The result is a valid RFC 4122 version 4 UUID (version
nibble 4, variant bits 10); two processes share a prefix with probability about
n² / 2⁷⁵ for n processes.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Final

__all__ = ["new_event_id"]

_COUNTER_BITS: Final = 48
_lock = threading.Lock()
# The prefix and its counter live in one tuple, read with one load: a thread can never pair
# a new counter with an old prefix (which would repeat ids) while another thread renews.
_state: tuple[str, itertools.count[int]]


def _random_prefix() -> str:
    """``xxxxxxxx-xxxx-4xxx-yxxx-`` with 74 random bits (y is 8, 9, a or b)."""
    bits = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    h = f"{bits & ((1 << 60) - 1):015x}"
    variant = 0x8 | (bits >> 60) & 0x3
    tail = (bits >> 62) & 0xFFF
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant:x}{tail:03x}-"


def _renew() -> None:
    global _state
    _state = (_random_prefix(), itertools.count())


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by a thread that is gone
    _renew()


def new_event_id() -> str:
    """A fresh event id: a version 4 UUID string, unique across processes and forks."""
    state = _state
    n = next(state[1])  # atomic under the GIL
    if n >> _COUNTER_BITS:
        with _lock:
            if _state is state:  # the first thread to run out renews for everyone
                _renew()
        return new_event_id()
    return f"{state[0]}{n:012x}"


_renew()
os.register_at_fork(after_in_child=_after_fork_in_child)
