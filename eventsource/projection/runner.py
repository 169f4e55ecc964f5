"""The projection runner: a consumer group member that applies batches exactly once.

- Consumer group ``<application_id>.projection.<name>.v<version>``, ``read_committed``
  (events of aborted write transactions are never seen), no auto commit.
- **Eager rebalancing** (the librdkafka default ``range,roundrobin``): on assignment the
  runner reads its checkpoints from the read-model database and starts each partition
  there (``auto.offset.reset`` never decides). Eager was chosen because the runner finishes
  and commits every batch *before* calling ``consume`` again, and librdkafka runs rebalance
  callbacks only inside ``consume``: on revoke there is never a half-applied batch, so a
  full revoke costs nothing but the refetch. The new owner resumes from the checkpoint.
- Each batch is one database transaction holding the handlers' changes and the
  checkpoints (see :mod:`eventsource.projection.batch`).
- Offsets are also committed to Kafka (asynchronously, after the database commit) so that
  standard lag tooling works; they are never read back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from operator import methodcaller
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from eventsource.codec import EventCodec
from eventsource.domain import Position
from eventsource.errors import ConfigurationError, ProjectionError, WaitTimeoutError
from eventsource.kafka.access import (
    AUTHORIZATION_CODES,
    authentication_error,
    check_consumer_access,
    denied,
    is_login_failure,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import close_consumer, next_batch
from eventsource.kafka.names import projection_group
from eventsource.kafka.reach import client_error, lost_brokers
from eventsource.kafka.stable import wait_until_readable
from eventsource.projection.batch import BatchApplier, BatchOutcome
from eventsource.projection.checkpoints import TopicPartition as TP
from eventsource.projection.checkpoints import ensure_checkpoint_rows, read_checkpoints
from eventsource.projection.dberrors import (
    Abandoned,
    is_permanent_db_error,
    permanent_error,
    retry_transient,
)
from eventsource.projection.deadletter import dead_letter_hook
from eventsource.projection.definition import Projection
from eventsource.projection.offsets import check_within_topic, end_offsets, positions
from eventsource.projection.status import PartitionStatus, RunStats, projection_status
from eventsource.projection.store import create_read_model_engine, ensure_schema, read_only
from eventsource.projection.types import FailureHook, GuardedListener, NullListener, RunnerListener

__all__ = ["ProjectionRunner", "RunStats", "default_group_id"]

log = logging.getLogger(__name__)


#: Consumer settings the exactly-once argument rests on; overrides may not change them.
_error = methodcaller("error")

_FIXED = {"isolation.level": "read_committed", "enable.auto.commit": False}


def _checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    for key, required in _FIXED.items():
        if key in overrides and str(overrides[key]).lower() != str(required).lower():
            raise ConfigurationError(
                f"consumer setting {key}={overrides[key]!r} is not allowed for a projection "
                f"runner: it needs {key}={required!r} (read_committed keeps events of aborted "
                "transactions out; positions are kept in the read-model database)"
            )
    return dict(overrides)


def default_group_id(settings: KafkaSettings, projection: Projection) -> str:
    """The consumer group of a projection version."""
    return projection_group(settings.application_id, projection.name, projection.version)


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
        self._overrides = _checked_overrides(consumer_overrides or {})
        self.engine = create_read_model_engine(database_url)
        ensure_schema(self.engine, projection)
        self._applier = BatchApplier(projection, self.engine, self.codec, self.hook, self.listener)
        self._consumer: Consumer | None = None
        self._assigned: set[TP] = set()
        self._applied: dict[TP, int] = {}
        self._closed = False
        self._revoked = False
        self._broker_lost = False  # set by error_cb; cleared once a broker answers again
        self._refused: KafkaError | None = None  # a refused login, seen by error_cb

    # lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the group, close the consumer, the failure hook and the engine."""
        if self._closed:
            return
        self._closed = True
        self._close_consumer()
        self.hook.close()
        self.engine.dispose()

    @property
    def assignment(self) -> frozenset[TP]:
        """Partitions this runner currently owns."""
        return frozenset(self._assigned)

    # running --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> RunStats:
        """Consume and apply until ``stop`` is set; then finish the batch and leave the group."""
        stop = stop or threading.Event()
        stats = RunStats()
        started = time.monotonic()
        caught_up_said = False
        try:
            while not stop.is_set():
                try:
                    got = self._step(stats, stop)
                except Abandoned:
                    break  # stopped while the database was away: the batch was not applied

                if not got and not caught_up_said and self._assigned and self._at_end():
                    caught_up_said = True
                    self.listener.on_caught_up()
                elif got:
                    caught_up_said = False
        finally:
            stats.seconds = time.monotonic() - started
            self._close_consumer()
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
        consumer = self._ensure_consumer()
        if after:
            wait_until_readable(consumer, after, max(0.1, deadline - time.monotonic()))
        targets = end_offsets(consumer, self.projection, deadline - time.monotonic())
        while True:
            self._step(stats, None, deadline)
            done = self._done_offsets(consumer, targets, deadline)
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
        consumer = self._ensure_consumer()
        self._revoked = False
        if self._broker_lost and self._broker_back(consumer):
            self.listener.on_batch(0, 0.0)  # progress again: clears the reported error
        messages = next_batch(consumer, self.poll_timeout, self.batch_size)
        if self._refused is not None:
            self._close_consumer()
            raise authentication_error(self.settings, self._refused)
        if not self._revoked and not any(map(_error, messages)):
            good = messages  # the common case: no errors, the assignment did not shrink
        else:
            good = self._usable(messages)
        positions = self._positions(consumer)
        if not good:
            idle = {tp: o for tp, o in positions.items() if o > self._applied.get(tp, 0)}
            if idle:
                self._apply_with_retry([], idle, stats, stop, deadline)
            return False
        self._apply_with_retry(good, positions, stats, stop, deadline)
        return True

    def _usable(self, messages: list[Any]) -> list[Any]:
        """Records of owned partitions; consumer errors are raised or reported."""
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                if (message.topic(), message.partition()) in self._assigned:
                    good.append(message)
                continue
            if error.code() in AUTHORIZATION_CODES:
                self._close_consumer()
                group = error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
                raise denied(
                    self.settings,
                    "group" if group else "topic",
                    self.group_id
                    if group
                    else (message.topic() or ", ".join(self.projection.topics)),
                    "READ",
                    f"projection {self.projection.name!r} cannot consume",
                )
            if error.fatal():
                raise ProjectionError(f"Kafka consumer failed: {error.str()}")
            if error.code() != KafkaError._PARTITION_EOF:
                self.listener.on_error(client_error(self.settings, error))
        return good

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
                give_up=self._close_consumer,
            )
        except Exception as exc:
            if is_permanent_db_error(exc):
                raise permanent_error(self.projection, exc) from exc
            raise
        assert outcome.next_offsets is not None
        self._applied.update(outcome.next_offsets)
        stats.applied += outcome.applied
        stats.ignored += outcome.ignored
        stats.dead_lettered += outcome.dead_lettered
        stats.duplicates += outcome.duplicates
        if messages:
            stats.batches += 1
            self.listener.on_batch(len(messages), time.monotonic() - started)
        self._commit_to_kafka(outcome.next_offsets)

    def _commit_to_kafka(self, offsets: dict[TP, int]) -> None:
        if not self.commit_offsets_to_kafka or self._consumer is None:
            return
        owned = [
            TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self._assigned
        ]
        if owned:
            try:
                self._consumer.commit(offsets=owned, asynchronous=True)
            except KafkaException as exc:  # lag tooling only; the database is the truth
                log.debug("offset commit to Kafka failed: %s", exc)

    def _positions(self, consumer: Consumer) -> dict[TP, int]:
        return positions(consumer, self._assigned)

    def _done_offsets(
        self, consumer: Consumer, targets: dict[TP, int], deadline: float
    ) -> dict[TP, int]:
        done = dict(self._applied)
        for tp, position in self._positions(consumer).items():
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

    def _at_end(self) -> bool:
        consumer = self._ensure_consumer()
        for topic, partition in self._assigned:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high < 0 or high > self._applied.get((topic, partition), 0):
                return False  # not known yet, or behind
        return True

    def _ensure_consumer(self) -> Consumer:
        if self._closed:
            raise ProjectionError(f"runner of {self.projection!r} is closed")
        if self._consumer is None:
            # Missing ACLs are told at start, by the broker, before the group is joined.
            check_consumer_access(
                self.settings,
                tuple(self.projection.topics),
                self.group_id,
                f"projection {self.projection.name!r} cannot consume",
                self.settings.connect_timeout_s,
            )
            config = self.settings.consumer_config(
                self.group_id, **{"error_cb": self._on_client_error, **self._overrides}
            )
            consumer = Consumer(config)
            consumer.subscribe(
                list(self.projection.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            self._consumer = consumer
        return self._consumer

    def _on_client_error(self, error: KafkaError) -> None:
        # librdkafka reconnects by itself; meanwhile say why nothing moves (/readyz).
        if is_login_failure(error):
            self._refused = error  # retrying cannot help: the next step raises it
        elif lost_brokers(error):
            self._broker_lost = True
            self.listener.on_error(client_error(self.settings, error))

    def _broker_back(self, consumer: Consumer) -> bool:
        try:
            consumer.list_topics(timeout=0.2)
        except KafkaException:
            return False
        self._broker_lost = False
        return True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        stored = self._checkpoints_for(tps)
        for part in partitions:
            offset = stored.get((part.topic, part.partition), 0)
            if offset > 0:
                check_within_topic(consumer, self.projection, part.topic, part.partition, offset)
            part.offset = offset if offset > 0 else OFFSET_BEGINNING
        consumer.assign(partitions)
        self._assigned = set(tps)
        self._applied.update(stored)
        self.listener.on_assigned(tps)

    def _checkpoints_for(self, tps: list[TP]) -> dict[TP, int]:
        # Runs inside a rebalance callback, where an exception would leave the consumer
        # without its assignment: ride out short database outages here.
        p = self.projection

        def read() -> dict[TP, int]:
            with self.engine.begin() as conn:
                ensure_checkpoint_rows(conn, p.name, p.version, tps)
                return read_checkpoints(conn, p.name, p.version, tps)

        return retry_transient(
            read,
            p,
            doing="reading checkpoints",
            deadline=time.monotonic() + 60,
            on_error=self.listener.on_error,
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._revoked = True  # records of these partitions in this consume() are dropped
        # Nothing is in flight here: batches commit before consume() is called again.
        self._assigned.difference_update(tps)
        self.listener.on_revoked(tps)

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            close_consumer(consumer, what=f"consumer of projection {self.projection.name!r}")
            self._assigned.clear()
