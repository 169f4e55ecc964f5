"""What a partition writer is told: one value shared by both Kafka stores and their writers.

A new writer option goes here, once: :class:`KafkaEventStore` and
:class:`GroupedKafkaEventStore` take a :class:`WriterOptions` (``options=``) and hand it to
every :class:`~eventsource.store.kafka.writer.PartitionWriter` they start.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings

__all__ = ["WriterOptions", "WriterState"]


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How the partition writers of a store batch, stamp and bound their appends.

    ``source`` is the CloudEvents ``ce_source`` of every event written (default
    ``/eventsource/<application_id>``). ``max_batch_events`` bounds the events of one group
    commit. ``append_timeout`` (seconds) bounds a blocking ``append``; default: twice the
    settings' ``delivery_timeout_ms`` plus 5 s. ``cache_size`` (aggregates kept in memory
    per partition) and ``local_catchup_limit`` (events a local snapshot file may lag before
    the snapshot topic is used instead) concern only the grouped store's writers.
    ``read_wait`` (seconds) bounds how long a ``load`` or ``version`` waits for a partition
    whose writer is establishing a commit's outcome (or catching up) before it fails with
    the retriable ``StoreUnavailableError``. ``pause_collector``: each writer pauses the
    cyclic garbage collector while a group commit is in flight (:mod:`eventsource.gcpause`,
    shared with the projection runners, bounded in time and allocations); ``False`` leaves
    the collector alone.
    """

    source: str | None = None
    max_batch_events: int = 1000
    append_timeout: float | None = None
    cache_size: int = 10_000
    local_catchup_limit: int = 100_000
    read_wait: float = 5.0
    pause_collector: bool = True

    def __post_init__(self) -> None:
        if self.read_wait < 0:
            raise ConfigurationError(
                f"WriterOptions.read_wait must be >= 0 seconds, got {self.read_wait}"
            )
        if self.max_batch_events < 1:
            raise ConfigurationError(
                f"WriterOptions.max_batch_events must be >= 1, got {self.max_batch_events}"
            )
        if self.append_timeout is not None and self.append_timeout <= 0:
            raise ConfigurationError(
                f"WriterOptions.append_timeout must be > 0 seconds, got {self.append_timeout}"
            )
        if self.cache_size < 1:
            raise ConfigurationError(
                f"WriterOptions.cache_size must be >= 1 aggregate, got {self.cache_size}"
            )
        if self.local_catchup_limit < 0:
            raise ConfigurationError(
                "WriterOptions.local_catchup_limit must be >= 0 events, got "
                f"{self.local_catchup_limit}"
            )

    def resolved(self, settings: KafkaSettings) -> WriterOptions:
        """These options with the defaults that depend on the settings filled in."""
        source = self.source or f"/eventsource/{settings.application_id}"
        timeout = self.append_timeout
        if timeout is None:
            timeout = 2 * settings.delivery_timeout_ms / 1000 + 5
        return replace(self, source=source, append_timeout=timeout)

    @property
    def ce_source(self) -> str:
        """``source`` once resolved (a writer is always given resolved options)."""
        assert self.source is not None, "use WriterOptions.resolved(settings)"
        return self.source

    @property
    def timeout(self) -> float:
        """``append_timeout`` once resolved."""
        assert self.append_timeout is not None, "use WriterOptions.resolved(settings)"
        return self.append_timeout


class WriterState(enum.StrEnum):
    """Where a partition writer is in its life (compare with the members, not strings)."""

    STARTING = "starting"
    """Fencing older writers, restoring, catching up: appends are refused (retriable)."""
    SERVING = "serving"
    RECOVERING = "recovering"
    """Replacing its producer after an error; a commit's outcome may be unknown."""
    FENCED = "fenced"
    """A newer writer with the same transactional id took over."""
    FAILED = "failed"
    """Could not start, or stopped after an unexpected error."""
    CLOSED = "closed"
