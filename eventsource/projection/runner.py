"""The projection runner: a consumer group member that applies batches exactly once.

- Its consumer, the partitions it owns and where each starts (the checkpoints, read on
  assignment) are its :class:`~eventsource.projection.member.GroupMember`.
- Each batch is one database transaction holding the handlers' changes and the
  checkpoints (see :mod:`eventsource.projection.batch`), retried while the database is
  unavailable (:func:`~eventsource.projection.dberrors.retry_transient`).
- ``run`` loops until stopped; ``run_until_caught_up`` until the end offsets as of the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from eventsource.codec import EventCodec
from eventsource.domain import Position
from eventsource.errors import ProjectionError, WaitTimeoutError
from eventsource.gcpause import gc_paused
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.stable import wait_until_readable
from eventsource.projection.batch import BatchApplier, BatchOutcome
from eventsource.projection.checkpoints import TopicPartition as TP
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.dberrors import (
    Abandoned,
    is_permanent_db_error,
    permanent_error,
    retry_transient,
)
from eventsource.projection.deadletter import dead_letter_hook
from eventsource.projection.definition import Projection
from eventsource.projection.member import GroupMember, checked_overrides, default_group_id
from eventsource.projection.offsets import end_offsets
from eventsource.projection.status import PartitionStatus, RunStats, projection_status
from eventsource.projection.store import create_read_model_engine, ensure_schema, read_only
from eventsource.projection.types import FailureHook, GuardedListener, NullListener, RunnerListener

__all__ = ["ProjectionRunner", "RunStats", "default_group_id"]


class ProjectionRunner:
    """Runs one projection version against Kafka and a read-model database."""

    def __init__(
        self,
        projection: Projection,
        settings: KafkaSettings,
        database_url: str,
        *,
        batch_size: int = 5000,
        codec: EventCodec | None = None,
        group_id: str | None = None,
        listener: RunnerListener | None = None,
        failure_hook: FailureHook | None = None,
        poll_timeout: float = 0.5,
        consumer_overrides: dict[str, Any] | None = None,
        commit_offsets_to_kafka: bool = True,
        max_db_outage_s: float = 300.0,
    ) -> None:
        if batch_size < 1:
            raise ProjectionError(f"batch_size must be >= 1, got {batch_size}")
        self.projection = projection
        self.settings = settings
        self.database_url = database_url
        self.batch_size = batch_size
        self.group_id = group_id or default_group_id(settings, projection)
        self.codec = codec or EventCodec.for_events(projection.event_types())
        self.listener: RunnerListener = GuardedListener(listener or NullListener())
        self.hook = failure_hook or dead_letter_hook(projection, settings)
        self.poll_timeout = poll_timeout
        self.commit_offsets_to_kafka = commit_offsets_to_kafka
        #: How long ``run`` retries a batch while the database is unavailable before it
        #: raises ProjectionError (``run_until_caught_up`` is bounded by its timeout).
        self.max_db_outage_s = max_db_outage_s
        overrides = checked_overrides(consumer_overrides or {})
        self.engine = create_read_model_engine(database_url)
        ensure_schema(self.engine, projection)
        self._applier = BatchApplier(projection, self.engine, self.codec, self.hook, self.listener)
        self._member = GroupMember(
            projection,
            settings,
            self.engine,
            self.group_id,
            self.listener,
            overrides,
            commit_offsets_to_kafka=commit_offsets_to_kafka,
        )

    # lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the group, close the consumer, the failure hook and the engine."""
        if self._member.closed:
            return
        self._member.closed = True
        self._member.leave()
        self.hook.close()
        self.engine.dispose()

    @property
    def assignment(self) -> frozenset[TP]:
        """Partitions this runner currently owns."""
        return frozenset(self._member.assigned)

    # running --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> RunStats:
        """Consume and apply until ``stop`` is set; then finish the batch and leave the group."""
        stop = stop or threading.Event()
        stats = RunStats()
        started = time.monotonic()
        caught_up_said = False
        member = self._member
        try:
            while not stop.is_set():
                try:
                    got = self._step(stats, stop)
                except Abandoned:
                    break  # stopped while the database was away: the batch was not applied

                if not got and not caught_up_said and member.assigned and member.at_end():
                    caught_up_said = True
                    self.listener.on_caught_up()
                elif got:
                    caught_up_said = False
        finally:
            stats.seconds = time.monotonic() - started
            member.leave()
        return stats

    def run_until_caught_up(
        self, timeout: float = 60.0, *, after: Sequence[Position] = ()
    ) -> RunStats:
        """Apply until every partition of the projection's topics reached its end offset
        (last stable offset) as of this call; raise WaitTimeoutError after ``timeout``.

        ``after``: positions the caller wrote (an append's result) that the end must
        include: the end offsets are taken once the last stable offset has passed them
        (Kafka writes commit markers after ``commit_transaction()`` returns, so "as of this
        call" can lag a write that just returned). The wait counts against ``timeout``.
        Same type and default as ``replay(after=...)`` and ``rebuild(after=...)``; ``None``
        (the former default) still means no positions."""
        stats = RunStats()
        started = time.monotonic()
        deadline = started + timeout
        consumer = self._member.consumer()
        if after:
            wait_until_readable(consumer, after, max(0.1, deadline - time.monotonic()))
        targets = end_offsets(consumer, self.projection, deadline - time.monotonic())
        while True:
            self._step(stats, None, deadline)
            done = self._done_offsets(targets, deadline)
            if all(done.get(tp, 0) >= end for tp, end in targets.items()):
                break
            if time.monotonic() > deadline:
                behind = {f"{t}[{p}]": (done.get((t, p), 0), e) for (t, p), e in targets.items()}
                raise WaitTimeoutError(
                    f"projection {self.projection.name!r} v{self.projection.version} did not "
                    f"catch up within {timeout}s; (checkpoint, end) per partition: {behind}. "
                    "Is another member of the group holding partitions, or is it stopped?"
                )
        stats.seconds = time.monotonic() - started
        self.listener.on_caught_up()
        return stats

    def status(self) -> list[PartitionStatus]:
        """Checkpoint, end offset and lag of every partition of the projection's topics."""
        return projection_status(self.projection, self.settings, self.engine)

    # internals ------------------------------------------------------------------------
    def _step(
        self, stats: RunStats, stop: threading.Event | None, deadline: float | None = None
    ) -> bool:
        # paused from the consume until the batch's records are released: they are never
        # traversed by the collector, nor promoted to the generations full collections scan
        with gc_paused():
            return self._consume_and_apply(stats, stop, deadline)

    def _consume_and_apply(
        self, stats: RunStats, stop: threading.Event | None, deadline: float | None
    ) -> bool:
        good, positions = self._member.poll(self.poll_timeout, self.batch_size)
        if not good:
            applied = self._member.applied
            idle = {tp: o for tp, o in positions.items() if o > applied.get(tp, 0)}
            if idle:
                self._apply_with_retry([], idle, stats, stop, deadline)
            return False
        self._apply_with_retry(good, positions, stats, stop, deadline)
        return True

    def _apply_with_retry(
        self,
        messages: list[Any],
        positions: dict[TP, int],
        stats: RunStats,
        stop: threading.Event | None,
        deadline: float | None,
    ) -> None:
        started = time.monotonic()

        def attempt() -> BatchOutcome:
            nonlocal started
            started = time.monotonic()
            if messages:
                return self._applier.apply(messages, positions)
            return self._applier.advance(positions)

        try:
            # On giving up, the consumer's position is past records that were not
            # committed: drop it, so the next call starts again from the checkpoints.
            outcome = retry_transient(
                attempt,
                self.projection,
                doing="batch",
                deadline=deadline,
                max_outage_s=self.max_db_outage_s,
                stop=stop,
                on_error=self.listener.on_error,
                give_up=self._member.leave,
            )
        except Exception as exc:
            if is_permanent_db_error(exc):
                raise permanent_error(self.projection, exc) from exc
            raise
        assert outcome.next_offsets is not None
        self._member.applied.update(outcome.next_offsets)
        stats.applied += outcome.applied
        stats.ignored += outcome.ignored
        stats.dead_lettered += outcome.dead_lettered
        stats.duplicates += outcome.duplicates
        if messages:
            stats.batches += 1
            self.listener.on_batch(len(messages), time.monotonic() - started)
        self._member.commit(outcome.next_offsets)

    def _done_offsets(self, targets: dict[TP, int], deadline: float) -> dict[TP, int]:
        done = dict(self._member.applied)
        for tp, position in self._member.positions().items():
            done[tp] = max(done.get(tp, 0), position)
        p = self.projection

        def read() -> dict[TP, int]:
            with self.engine.connect() as raw, read_only(raw) as conn:
                return read_checkpoints(conn, p.name, p.version, targets)

        stored = retry_transient(
            read,
            p,
            doing="reading checkpoints",
            deadline=deadline,
            max_outage_s=self.max_db_outage_s,
            on_error=self.listener.on_error,
        )
        for tp, offset in stored.items():  # partitions applied by other group members
            done[tp] = max(done.get(tp, 0), offset)
        return done
