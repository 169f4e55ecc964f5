"""A partition writer that restores from snapshots and writes them with every append.

:class:`SnapshotPartitionWriter` is a :class:`PartitionWriter` whose index is a
:class:`SnapshotIndex` (bounded memory, SQLite file per partition). It differs in three
places, all after ``init_transactions()`` has fenced the previous owner:

* **restore**: from the local SQLite file when it is of the aggregate's snapshot version and
  at most ``local_catchup_limit`` events behind; otherwise from the compacted snapshot topic
  (time proportional to the number of aggregates); catch-up then reads only the events after
  that point;
* **rebuild**: when the snapshot topic is not complete for the aggregate's
  ``snapshot_version`` (no completion record, or snapshots of another version), the
  partition is folded from its events, *visibly*: a warning log line and the counter
  ``eventsource_snapshot_rebuilds_total{topic,partition,reason}``; then every aggregate's
  snapshot and the completion record are written, so the next owner restores quickly;
* **append**: the new snapshot of each aggregate a group commit touches is produced to the
  snapshot topic in the same transaction as its events, and the SQLite file is committed
  with the events offset after the Kafka commit.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import Counter

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import next_batch
from eventsource.kafka.names import reader_group
from eventsource.store.kafka.admission import Admitted
from eventsource.store.kafka.catchup import TailRead
from eventsource.store.kafka.options import WriterOptions
from eventsource.store.kafka.producer import DeliveryMark
from eventsource.store.kafka.scaleout.snapshots import (
    META_KEY,
    encode_meta,
    encode_snapshot,
    meta_version,
    snapshot_prefix,
)
from eventsource.store.kafka.scaleout.snapshots_index import SnapshotIndex
from eventsource.store.kafka.writer import PartitionWriter

__all__ = ["SNAPSHOT_REBUILDS", "SnapshotPartitionWriter"]

log = logging.getLogger(__name__)

SNAPSHOT_REBUILDS = Counter(
    "eventsource_snapshot_rebuilds",
    "Partitions whose aggregates were folded from the events because the snapshots could "
    "not be used (missing, incomplete, or of another snapshot_version).",
    ["topic", "partition", "reason"],
)

_CHUNK = 5000


class SnapshotPartitionWriter(PartitionWriter):
    """Single writer of ``topic[partition]`` that keeps its aggregates as snapshots."""

    index: SnapshotIndex[Aggregate]

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        partition: int,
        aggregate_cls: type[Aggregate],
        codec: EventCodec,
        options: WriterOptions,
        *,
        snapshot_topic: str,
        directory: Path,
    ) -> None:
        super().__init__(settings, topic, partition, aggregate_cls, codec, options)
        self.snapshot_topic = snapshot_topic
        self.local_catchup_limit = options.local_catchup_limit
        self.index = SnapshotIndex(
            aggregate_cls, directory / f"{topic}-{partition}.sqlite3", cache_size=options.cache_size
        )
        self.restored_from = ""
        """``"local"``, ``"topic"``, ``"events"`` (a rebuild) or ``"new"`` once started."""
        self.rebuild_reason: str | None = None
        self.predecessor: SnapshotPartitionWriter | None = None
        """A writer of the same partition still ending (set by the grouped store)."""
        self.restored_aggregates = 0
        self.caught_up_events = 0
        self.takeover_seconds = 0.0
        """Restore + catch-up (+ snapshot writing after a rebuild), after fencing."""
        self._restore_started = 0.0

    def close(self, timeout: float = 30.0) -> None:
        super().close(timeout)
        if self.stopped:
            self.index.close()

    # -- restore (runs on the writer thread, after fencing) --------------------------
    def restore(self) -> TailRead:
        self._restore_started = time.monotonic()
        predecessor, self.predecessor = self.predecessor, None
        if predecessor is not None:
            # An earlier writer of this partition in this process, released while it was
            # still catching up: fenced now, it ends after its read; then its file is ours.
            while not predecessor.stopped:
                self._check_closing()
                predecessor.join(0.5)
            predecessor.index.close()
        sv = self.index.aggregate_cls.snapshot_version
        end = self._events_end()
        local_sv, local_offset = self.index.local_state()
        if (
            local_sv == sv
            and local_offset is not None
            and local_offset <= end
            and end - local_offset <= self.local_catchup_limit
        ):
            self.restored_from = "local"
            return TailRead(start=local_offset, end=local_offset)
        self.index.reset()
        problem = self._restore_from_topic(sv)
        if problem is None:
            self.restored_from = "topic"
            self.restored_aggregates = len(self.index)
            return TailRead(start=end, end=end)
        self.index.reset()
        if end == 0:  # a new partition: nothing to rebuild, only the completion record
            self.restored_from = "new"
            return TailRead(start=0)
        self.rebuild_reason = problem
        self.restored_from = "events"
        SNAPSHOT_REBUILDS.labels(self.topic, str(self.partition), problem.split(":")[0]).inc()
        log.warning(
            "snapshots of %s cannot be used (%s): folding its events (end offset %d) instead "
            "and writing fresh snapshots of %s snapshot version %d",
            self.where,
            problem,
            end,
            self.index.aggregate_cls.__qualname__,
            sv,
        )
        return TailRead(start=0)

    def caught_up(self, tail: TailRead) -> None:
        self.index.flush(tail.end)
        self.caught_up_events = tail.records
        if self.restored_from in ("events", "new"):
            self._publish_all()
        self.takeover_seconds = time.monotonic() - self._restore_started

    def _events_end(self) -> int:
        consumer = self._consumer("end")
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, self.partition), timeout=self.op_timeout, cached=False
            )
            return int(high)
        except KafkaException as exc:
            raise StoreUnavailableError(
                f"cannot read the end offset of {self.where}: {exc}; retry"
            ) from exc
        finally:
            consumer.close()

    def _restore_from_topic(self, sv: int) -> str | None:
        """Load the snapshot partition into the index; a reason if it cannot be used."""
        prefix = snapshot_prefix(sv)
        meta: int | None = None
        foreign: set[str] = set()  # aggregates whose latest snapshot is of another version
        rows: list[tuple[str, bytes]] = []
        consumer = self._consumer("snapshots")
        stall = self.stall_timeout
        deadline = time.monotonic() + stall
        try:
            consumer.assign([TopicPartition(self.snapshot_topic, self.partition, 0)])
            while True:
                self._check_closing()
                messages = next_batch(consumer, 0.5, _CHUNK)
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            self.index.put_encoded(rows)
                            if meta is None:
                                return "missing: no completion record on the snapshot topic"
                            if meta != sv or foreign:
                                return (
                                    f"version: completion record of version {meta}, "
                                    f"{len(foreign)} snapshots of another version; the "
                                    f"aggregate has {sv}"
                                )
                            return None
                        if error.fatal():
                            raise StoreUnavailableError(f"reading {self.snapshot_topic}: {error}")
                        continue
                    key, value = message.key() or b"", message.value()
                    aggregate_id = key.decode("utf-8")
                    if key == META_KEY:
                        meta = meta_version(value)
                    elif value is not None and value.startswith(prefix):
                        rows.append((aggregate_id, value))
                        foreign.discard(aggregate_id)
                    else:  # a tombstone, or a later snapshot of another version
                        self.index.put_encoded(rows)
                        rows = []
                        self.index.delete([aggregate_id])
                        if value is None:
                            foreign.discard(aggregate_id)
                        else:
                            foreign.add(aggregate_id)
                if len(rows) >= _CHUNK:
                    self.index.put_encoded(rows)
                    rows = []
                if messages:
                    deadline = time.monotonic() + stall
                elif time.monotonic() > deadline:
                    raise StoreUnavailableError(
                        f"reading {self.snapshot_topic}[{self.partition}] made no progress "
                        f"for {stall:.0f}s: check the broker at {self.settings.bootstrap_servers}"
                    )
        except KafkaException as exc:
            raise StoreUnavailableError(
                f"reading {self.snapshot_topic}[{self.partition}] failed: {exc}"
            ) from exc
        finally:
            consumer.close()

    def _publish_all(self) -> None:
        """After a rebuild: every aggregate's snapshot, then the completion record."""
        producer = self.producer
        assert producer is not None
        sv = self.index.aggregate_cls.snapshot_version
        for chunk in self.index.encoded(_CHUNK):
            self._check_closing()
            producer.begin_transaction()
            for aggregate_id, data in chunk:
                self._produce_snapshot(producer, aggregate_id, data)
            producer.commit_transaction(self.op_timeout)
        producer.begin_transaction()
        producer.produce(self.snapshot_topic, encode_meta(sv), META_KEY, partition=self.partition)
        producer.commit_transaction(self.op_timeout)
        log.info("wrote %d snapshots and the completion record of %s", len(self.index), self.where)

    def _check_closing(self) -> None:
        if self.closing:
            raise StoreUnavailableError(f"the writer of {self.where} was closed while restoring")

    def _consumer(self, purpose: str) -> Consumer:
        return Consumer(
            self.settings.consumer_config(
                reader_group(self.settings.application_id, f"snapshot-{purpose}"),
                **{
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 100,
                },
            )
        )

    # -- appends ----------------------------------------------------------------------
    def _produce(
        self, producer: Producer, batch: Admitted, first: DeliveryMark, last: DeliveryMark
    ) -> None:
        super()._produce(producer, batch, first, last)
        for aggregate_id, state in batch.states.items():  # as the batch leaves them
            self._produce_snapshot(producer, aggregate_id, encode_snapshot(state))

    def _produce_snapshot(self, producer: Producer, aggregate_id: str, data: bytes) -> None:
        producer.produce(
            self.snapshot_topic, data, aggregate_id.encode("utf-8"), partition=self.partition
        )

    def complete(self, batch: Admitted, offset: int) -> None:
        super().complete(batch, offset)
        self.index.flush(self.end_offset)
