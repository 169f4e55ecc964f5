"""SIGTERM/SIGINT handling that is in place from the first moment of a service's life.

Kubernetes sends SIGTERM whenever it likes, also while the process is still importing the
user's projections or connecting. The handlers are installed before any of that (by the
``eventsource run`` entry point) and only set a stop event: the start-up sees it, skips
starting anything and exits 0; a running service drains. A second signal exits at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["StopSignals", "stop_signals"]

#: Exit code of a second signal (the drain was cut short): ExitCode.FAILURE.
_SECOND_SIGNAL_EXIT = 1


class StopSignals:
    """A stop event set by the first SIGTERM/SIGINT; the second exits the process."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: str | None = None  #: the first signal's name
        self._count = 0
        self._on_stop: Callable[[str], None] | None = None
        self._on_second: Callable[[str], None] | None = None
        self._installed = False

    def install(self) -> StopSignals:
        """Install the handlers (main thread only; idempotent)."""
        if not self._installed:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._handle)
            self._installed = True
        return self

    def notify(
        self, on_stop: Callable[[str], None] | None, on_second: Callable[[str], None] | None
    ) -> None:
        """Call ``on_stop`` on the first signal (now, if one came already) and
        ``on_second`` just before a second one exits the process."""
        self._on_stop, self._on_second = on_stop, on_second
        if self.received is not None and on_stop is not None:
            on_stop(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count > 1:
            if self._on_second is not None:
                self._on_second(name)
            os._exit(_SECOND_SIGNAL_EXIT)
        self.received = name
        self.event.set()
        if self._on_stop is not None:
            self._on_stop(name)


_process_signals: StopSignals | None = None


def stop_signals() -> StopSignals:
    """The process's :class:`StopSignals`, installed on first use."""
    global _process_signals
    if _process_signals is None:
        _process_signals = StopSignals().install()
    return _process_signals
