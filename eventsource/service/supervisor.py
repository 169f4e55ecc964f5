"""Run several projection runners in threads; drain them on SIGTERM/SIGINT within a bound.

Each runner gets its own thread and :class:`MetricsListener`. A runner that fails with
anything but a configuration error or a poison stop is recreated after an exponential
backoff: that is how the service rides out a database or broker that goes away and comes
back (librdkafka reconnects by itself; a lost database connection surfaces as an error).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import FrameType
from typing import Any, Protocol

import structlog

from eventsource.errors import ConfigurationError, ProjectionStoppedError
from eventsource.service.metrics import MetricsListener
from eventsource.service.signals import StopSignals

#: A runner that failed after running this long starts its backoff from the beginning.
_HEALTHY_RUN_S = 60.0
#: Names of the runner threads start with it (see eventsource.service.shutdown).
RUNNER_THREAD_PREFIX = "runner-"


class ExitCode(IntEnum):
    """Exit codes of the ``eventsource`` command and of the service."""

    OK = 0
    FAILURE = 1  # operational failure: broker/database unreachable, drain bound exceeded
    USAGE = 2  # bad arguments, settings or import paths
    POISON = 3  # a projection with the STOP policy halted at a poison record
    INTERRUPTED = 130  # Ctrl-C (SIGINT) stopped a one-shot command (128 + SIGINT)


class Runner(Protocol):
    def run(self, stop: threading.Event | None = None) -> Any: ...

    def status(self) -> Sequence[Any]: ...


@dataclass
class Unit:
    """One supervised projection: how to build its runner, and its listener."""

    name: str
    factory: Callable[[MetricsListener], Runner]
    listener: MetricsListener
    #: Polled with the lag: True when the runner must switch to a newer live version
    #: (it also updates the listener's readiness); see eventsource.service.follow.
    follow: Callable[[], bool] | None = None


class Supervisor:
    """Owns the runner threads, the stop event and the exit code."""

    def __init__(
        self,
        units: Sequence[Unit],
        *,
        drain_timeout_s: float,
        log: Any,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        lag_interval_s: float = 5.0,
        signals: StopSignals | None = None,
    ) -> None:
        self._units = list(units)
        self._drain_timeout_s = drain_timeout_s
        self._log = log
        self._backoff_s = backoff_s
        self._lag_interval_s = lag_interval_s
        # Handlers installed before start-up (eventsource run): their event is our stop.
        self._early = signals
        self.stop = signals.event if signals is not None else threading.Event()
        self._runners: dict[str, Runner] = {}
        self._run_stops: dict[str, threading.Event] = {}  # stops one runner (a switch)
        self._switching: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._code = ExitCode.OK
        self._lock = threading.Lock()
        self._signals = 0

    # -- readiness -------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        detail = {u.name: u.listener.state.as_dict() for u in self._units}
        ready = not self.stop.is_set() and all(u.listener.state.ready for u in self._units)
        return ready, detail

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        for unit in self._units:
            thread = threading.Thread(
                target=self._loop,
                args=(unit,),
                name=f"{RUNNER_THREAD_PREFIX}{unit.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        lag = threading.Thread(target=self._poll_lag, name="lag-poller", daemon=True)
        lag.start()

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self._log.info("stopping: draining in-flight batches", reason=reason)
        self.stop.set()
        for run_stop in list(self._run_stops.values()):
            run_stop.set()

    def wait(self) -> ExitCode:
        """Block until every runner returned (or the drain bound passed); the exit code."""
        while any(t.is_alive() for t in self._threads) and not self.stop.is_set():
            time.sleep(0.2)
        deadline = time.monotonic() + self._drain_timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            self._log.error(
                "drain bound exceeded; exiting without a clean shutdown",
                threads=stuck,
                drain_timeout_s=self._drain_timeout_s,
            )
            self._fail(ExitCode.FAILURE)
        return self._code

    def run(self) -> ExitCode:
        """start + wait, with SIGTERM/SIGINT requesting a drain (a second one exits now)."""
        with self._signal_handlers():
            self.start()
            return self.wait()

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if self._early is not None:
            self._early.notify(self.request_stop, self._second_signal)
            try:
                yield
            finally:
                self._early.notify(None, None)
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            name = signal.Signals(signum).name
            if self._signals > 1:
                self._log.error("second signal: exiting without draining", signal=name)
                os._exit(int(ExitCode.FAILURE))
            self.request_stop(name)

        previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _second_signal(self, name: str) -> None:
        self._log.error("second signal: exiting without draining", signal=name)

    def _fail(self, code: ExitCode) -> None:
        with self._lock:
            if self._code == ExitCode.OK:
                self._code = code

    # -- threads ---------------------------------------------------------------------
    def _loop(self, unit: Unit) -> None:
        # Every log line of this thread, the runner's standard-logging ones included,
        # carries the projection (structlog context variables are per thread).
        structlog.contextvars.bind_contextvars(projection=unit.name)
        log = self._log.bind(projection=unit.name)
        delay = self._backoff_s[0]
        while not self.stop.is_set():
            runner: Runner | None = None
            started = time.monotonic()
            run_stop = self._run_stops[unit.name] = threading.Event()
            if self.stop.is_set():
                run_stop.set()
            try:
                runner = unit.factory(unit.listener)
                self._runners[unit.name] = runner
                log.info("runner started")
                runner.run(stop=run_stop)
                if unit.name in self._switching and not self.stop.is_set():
                    self._switching.discard(unit.name)
                    log.info("switching to the live version")
                    unit.listener.reset()
                    continue  # the factory starts the live version's runner
                if not self.stop.is_set():
                    log.info("runner finished")
                return
            except ProjectionStoppedError as exc:
                log.error("stopped at a poison record", error=str(exc))
                self._fail(ExitCode.POISON)
                self.request_stop("poison record")
                return
            except ConfigurationError as exc:
                log.error("configuration error", error=str(exc))
                self._fail(ExitCode.USAGE)
                self.request_stop("configuration error")
                return
            except Exception as exc:
                if unit.listener.last_exception is not exc:  # the runner may have reported it
                    unit.listener.on_error(exc)
                if time.monotonic() - started > _HEALTHY_RUN_S:
                    delay = self._backoff_s[0]  # it ran fine for a while: a fresh failure
                log.warning(
                    "runner failed; restarting after backoff",
                    delay_s=delay,
                    error=f"{type(exc).__name__}: {exc}",
                )
            finally:
                self._runners.pop(unit.name, None)
                close = getattr(runner, "close", None)
                if callable(close):
                    with contextlib.suppress(Exception):
                        close()
            unit.listener.reset()
            if self.stop.wait(delay):
                return
            delay = min(delay * 2, self._backoff_s[1])

    def _poll_lag(self) -> None:
        while not self.stop.wait(self._lag_interval_s):
            for unit in self._units:
                self._follow(unit)
                runner = self._runners.get(unit.name)
                if runner is None:
                    continue
                try:
                    unit.listener.record_lag(runner.status())
                except Exception as exc:  # lag is informative; never kill the service for it
                    self._log.debug("lag poll failed", projection=unit.name, error=str(exc))

    def _follow(self, unit: Unit) -> None:
        if unit.follow is None:
            return
        try:
            switch = unit.follow()
        except Exception as exc:  # the database is away: the runner reports that itself
            self._log.debug("live version check failed", projection=unit.name, error=str(exc))
            return
        if switch and unit.name not in self._switching:
            self._switching.add(unit.name)
            run_stop = self._run_stops.get(unit.name)
            if run_stop is not None:
                run_stop.set()  # finishes the batch, leaves the group; _loop restarts it
