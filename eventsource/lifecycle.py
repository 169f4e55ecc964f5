"""One life for every long-lived thread: start, ready or start error, loop, close, join.

The partition writers, the append server, the remote client's reply listener, the
ownership listener and the health server each own one thread. :class:`ServiceThread` gives
them the same life, and one :class:`ThreadState`:

``NEW`` --start()--> ``STARTING`` (``_prepare`` runs on the thread) --> ``RUNNING``
(``wait_ready`` returns true; ``_loop`` runs until ``stopping``) --> ``STOPPED``; a
``_prepare`` that raises makes ``FAILED`` with ``start_error`` set (``wait_ready`` returns
too: check ``start_error``); a ``_loop`` that raises makes ``FAILED`` with ``error`` set.
``_cleanup`` always runs last, on the thread, with no exception being handled (a Kafka
call failing there must not keep the start error's frames alive: see
:mod:`eventsource.kafka.unchained`). ``close(timeout)`` asks the loop to stop,
then joins the thread for at most ``timeout`` seconds (``join`` says whether it ended).
"""

from __future__ import annotations

import enum
import logging
import threading

__all__ = ["ServiceThread", "ThreadState"]

log = logging.getLogger(__name__)


class ThreadState(enum.StrEnum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class ServiceThread:
    """The life of one daemon thread named ``name``; subclasses fill in the three steps."""

    def __init__(self, name: str) -> None:
        self.thread_state = ThreadState.NEW
        self.start_error: BaseException | None = None
        """What ``_prepare`` raised: the thread never ran its loop."""
        self.error: BaseException | None = None
        """What ``_loop`` raised: the thread stopped early."""
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    # -- the three steps (on the thread) --------------------------------------------
    def _prepare(self) -> None:
        """Set-up before the thread counts as ready (connect, catch up, ...)."""

    def _loop(self) -> None:
        """Work until :attr:`stopping` is true (or there is nothing left to do)."""
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Release what the thread holds; runs last, whatever happened."""

    # -- control (any thread) ---------------------------------------------------------
    def start_thread(self) -> None:
        """Start the thread (once); see :meth:`wait_ready`."""
        if self.thread_state is ThreadState.NEW:
            self.thread_state = ThreadState.STARTING
            self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Whether ``_prepare`` ended (ready, or ``start_error``) within ``timeout`` s."""
        return self._ready.wait(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the loop to end (does not wait)."""
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        """Wake a loop that waits for work, so it sees :attr:`stopping` (a hook)."""

    def close(self, timeout: float = 30.0) -> None:
        """Stop, then wait up to ``timeout`` seconds for the thread (see :attr:`alive`)."""
        self.stop()
        self.join(timeout)

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------
    def _main(self) -> None:
        failed = False
        try:
            self._prepare()
        except BaseException as exc:  # reported through start_error; the thread ends
            self.start_error = exc
            self.thread_state = ThreadState.FAILED
            failed = True
        if failed:  # cleaned up outside the except block (eventsource.kafka.unchained)
            self._ready.set()
            self._cleanup()
            return
        self.thread_state = ThreadState.RUNNING
        self._ready.set()
        try:
            self._loop()
        except BaseException as exc:  # never silent
            self.error = exc
            self.thread_state = ThreadState.FAILED
            log.exception("thread %s stopped", self._thread.name)
        finally:
            if self.thread_state is not ThreadState.FAILED:
                self.thread_state = ThreadState.STOPPED
            self._cleanup()
