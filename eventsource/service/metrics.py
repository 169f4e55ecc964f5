"""Prometheus metrics of a projector process, fed by the runners' listener callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    """The metric families, in a registry of their own (tests build many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "eventsource_events_processed",
            "Events applied to the read model and checkpointed.",
            ["projection"],
            registry=r,
        )
        self.batches = Histogram(
            "eventsource_batch_seconds",
            "Time to apply and commit one batch.",
            ["projection"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.handler = Histogram(
            "eventsource_handler_seconds",
            "Mean handler time per event within a batch.",
            ["projection"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "eventsource_lag",
            "Records between the checkpoint and the end of the partition.",
            ["projection", "topic", "partition"],
            registry=r,
        )
        self.dead_letters = Counter(
            "eventsource_dead_letters",
            "Poison records sent to the dead-letter topic or that stopped the runner.",
            ["projection", "stage"],
            registry=r,
        )
        self.rebalances = Counter(
            "eventsource_rebalances",
            "Partition assignments and revocations.",
            ["projection", "kind"],
            registry=r,
        )
        self.errors = Counter(
            "eventsource_runner_errors",
            "Runner failures (the supervisor restarts the runner after a backoff).",
            ["projection"],
            registry=r,
        )
        self.up = Gauge(
            "eventsource_ready",
            "1 when the projection is assigned and processing without errors.",
            ["projection"],
            registry=r,
        )


@dataclass
class ProjectionState:
    """What /readyz needs to know about one projection; updated by its listener."""

    assigned: bool = False
    caught_up: bool = False
    partitions: int = 0
    last_error: str | None = None
    last_progress: float = field(default_factory=time.monotonic)
    version: int | None = None  #: the projection version the runner applies
    not_live: str | None = None  #: why the version run is not the one readers see

    @property
    def ready(self) -> bool:
        return self.assigned and self.last_error is None and self.not_live is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "version": self.version,
            "assigned": self.assigned,
            "caught_up": self.caught_up,
            "partitions": self.partitions,
            "error": self.last_error,
            "not_live": self.not_live,
        }


class MetricsListener:
    """The runner's ``RunnerListener``: counts into metrics, tracks readiness state."""

    def __init__(self, metrics: ServiceMetrics, projection: str, log: Any = None) -> None:
        self._metrics = metrics
        self._name = projection
        self._log = log
        self._lock = threading.Lock()
        self._assigned: set[Any] = set()
        self.state = ProjectionState()
        #: The last error reported, so the supervisor does not count a runner's twice.
        self.last_exception: BaseException | None = None

    def _set_ready(self) -> None:
        self._metrics.up.labels(self._name).set(1 if self.state.ready else 0)

    def on_assigned(self, partitions: Sequence[Any]) -> None:
        with self._lock:
            self._assigned.update(_keys(partitions))
            self.state.assigned = True
            self.state.caught_up = False
            self.state.partitions = len(self._assigned)
            self._metrics.rebalances.labels(self._name, "assigned").inc()
            self._set_ready()
        if self._log is not None:
            self._log.info("partitions assigned", partitions=_names(partitions))

    def on_revoked(self, partitions: Sequence[Any]) -> None:
        with self._lock:
            self._assigned.difference_update(_keys(partitions))
            self.state.partitions = len(self._assigned)
            self._metrics.rebalances.labels(self._name, "revoked").inc()
        if self._log is not None:
            self._log.info("partitions revoked", partitions=_names(partitions))

    def on_batch(self, n_events: int, seconds: float) -> None:
        with self._lock:
            self.state.last_error = None
            self.state.last_progress = time.monotonic()
            self._set_ready()
        if n_events:
            self._metrics.events.labels(self._name).inc(n_events)
            self._metrics.batches.labels(self._name).observe(seconds)
            self._metrics.handler.labels(self._name).observe(seconds / n_events)

    def on_dead_letter(self, stage: str, exc: BaseException) -> None:
        self._metrics.dead_letters.labels(self._name, str(stage)).inc()
        if self._log is not None:
            where = {k: getattr(exc, k, None) for k in ("topic", "partition", "offset")}
            self._log.warning(
                "poison record",
                stage=str(stage),
                error=f"{type(exc).__name__}: {exc}",
                **{k: v for k, v in where.items() if v is not None},
            )

    def on_caught_up(self) -> None:
        with self._lock:
            self.state.caught_up = True
            self.state.last_error = None
            self._set_ready()
        if self._log is not None:
            self._log.info("caught up")

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.last_exception = exc
            self.state.last_error = f"{type(exc).__name__}: {exc}"
            self._set_ready()
        self._metrics.errors.labels(self._name).inc()
        if self._log is not None:
            where = {k: getattr(exc, k, None) for k in ("topic", "partition", "offset")}
            self._log.error(
                "runner error",
                error=f"{type(exc).__name__}: {exc}",
                **{k: v for k, v in where.items() if v is not None},
            )

    def set_version(self, version: int, not_live: str | None) -> None:
        """The version being run, and why it is not live (None when it is)."""
        with self._lock:
            changed = not_live != self.state.not_live
            self.state.version = version
            self.state.not_live = not_live
            self._set_ready()
        if changed and not_live is not None and self._log is not None:
            self._log.warning("not ready: the version run is not live", reason=not_live)

    def reset(self) -> None:
        """Forget the assignment (the runner is being recreated after a failure)."""
        with self._lock:
            self._assigned.clear()
            self.state.assigned = False
            self.state.caught_up = False
            self.state.partitions = 0
            self._set_ready()

    def record_lag(self, statuses: Iterable[Any]) -> None:
        """Set the lag gauges from ``runner.status()`` rows (topic, partition, lag)."""
        for row in statuses:
            lag = getattr(row, "lag", None)
            if lag is not None:
                self._metrics.lag.labels(self._name, row.topic, str(row.partition)).set(lag)


def _keys(partitions: Sequence[Any]) -> set[Any]:
    keys: set[Any] = set()
    for p in partitions:
        topic = getattr(p, "topic", None)
        partition = getattr(p, "partition", None)
        keys.add((topic, partition) if topic is not None else p)
    return keys


def _names(partitions: Sequence[Any]) -> list[str]:
    return sorted(
        f"{k[0]}[{k[1]}]" if isinstance(k, tuple) and len(k) == 2 else str(k)
        for k in _keys(partitions)
    )
