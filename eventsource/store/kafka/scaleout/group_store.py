"""``GroupedKafkaEventStore``: several writer processes share the partitions of a topic.

Beside the single-owner :class:`~eventsource.store.kafka.KafkaEventStore`, this mode lets
each process own the partitions the writers group (:mod:`.ownership`) assigns to it:

* on assignment it starts a :class:`SnapshotPartitionWriter` per partition, which fences
  the previous owner, restores the snapshots, catches up, then serves (appends meanwhile
  fail with the retriable ``StoreUnavailableError``);
* on revocation it stops taking appends for the partition, finishes the queued ones and
  releases the writer before the group moves the partition on;
* an append, load or version for a partition it does not own fails at once with the
  retriable ``NotOwnerError`` naming the owner (see :mod:`.group_store_route` to send
  commands there).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate
from eventsource.errors import (
    ConfigurationError,
    NotOwnerError,
    StoreUnavailableError,
)
from eventsource.kafka.access import check_topic_operations
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.options import WriterOptions, WriterState
from eventsource.store.kafka.scaleout.group_store_futures import fenced_as_not_owner
from eventsource.store.kafka.scaleout.ownership import (
    SESSION_TIMEOUT_MS,
    OwnerDirectory,
    PartitionOwnership,
)
from eventsource.store.kafka.scaleout.snapshots import SNAPSHOTS_TOPIC_CONFIG, snapshots_topic
from eventsource.store.kafka.scaleout.snapshots_writer import SnapshotPartitionWriter
from eventsource.store.kafka.scaleout.supervision import PartitionSupervisor, RestartPolicy
from eventsource.store.kafka.served import ServedByWriters
from eventsource.store.kafka.topic_policy import check_events_topic
from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.port import AppendResult

__all__ = ["GroupedKafkaEventStore"]

_MEMBER = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_MEMBER_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class GroupedKafkaEventStore(ServedByWriters):
    """:class:`~eventsource.store.port.EventStore` serving the partitions this member owns.

    ``member`` names this process in the group (and in ``NotOwnerError``\\ s); give each
    process a stable, unique one (a pod name, say). ``directory`` holds one SQLite file per
    owned partition. ``partitions`` is used only when the store creates the topics.
    ``options`` (:class:`WriterOptions`): ``source``, ``max_batch_events``,
    ``append_timeout``, ``cache_size`` (aggregates each partition keeps in memory),
    ``local_catchup_limit``. ``restarts`` (:class:`RestartPolicy`): how a writer that
    stops fenced or failed on a partition this member still owns is started again, and
    when the partition is given up to the group (:mod:`.supervision`).
    ``session_timeout_ms`` (20 s): how long a crashed member's partitions wait for a new
    owner; keep it longer than the cluster's failover of a group coordinator
    (:data:`~.ownership.SESSION_TIMEOUT_MS` says why).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        aggregates: Sequence[type[Aggregate]],
        *,
        directory: Path,
        member: str | None = None,
        codec: EventCodec | None = None,
        partitions: int = 6,
        topic_prefix: str = "",
        topic_config: Mapping[str, str] | None = None,
        options: WriterOptions | None = None,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        restarts: RestartPolicy | None = None,
    ) -> None:
        super().__init__(
            settings,
            aggregates,
            codec=codec,
            partitions=partitions,
            topic_prefix=topic_prefix,
            topic_config=topic_config,
            options=options,
        )
        self.directory = directory
        if member is None:
            member = _MEMBER_CHARS.sub("-", f"{socket.gethostname()}-{os.getpid()}")
        self.member = member
        if not _MEMBER.match(self.member):
            raise ConfigurationError(
                f"member {self.member!r} must be 1-100 letters, digits, '.', '_' or '-' "
                "(it names the member's routing topics), unique per process"
            )
        self._types = {self.topic_for(t): t for t in self.aggregates}
        self._writers: dict[tuple[str, int], SnapshotPartitionWriter] = {}
        self._retiring: dict[tuple[str, int], SnapshotPartitionWriter] = {}
        self._lock = threading.Lock()
        self.owners = OwnerDirectory(settings)
        self.writer_hook: Callable[[SnapshotPartitionWriter], None] | None = None
        """Called with each new writer before it starts (diagnostics, fault injection)."""
        self.supervisor = PartitionSupervisor(
            self.member,
            restarts or RestartPolicy(),
            still_owned=self._still_owned,
            restart=self._restart,
            give_up=lambda _key: self.ownership.rejoin(self.supervisor.policy.rejoin_after),
        )
        self.ownership = PartitionOwnership(
            settings,
            list(self._types),
            member=self.member,
            on_assign=self._take,
            on_revoke=self._release,
            session_timeout_ms=session_timeout_ms,
        )

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> GroupedKafkaEventStore:
        """Create missing topics and join the writers group (does not wait for catch-up)."""
        if self._started:
            return self
        limits: dict[str, int] = {}
        for topic, aggregate_type in self._types.items():
            ensure_topic(self.settings, topic, self.partitions, config=self.topic_config)
            limits[topic] = check_events_topic(self.settings, topic)
            snapshots = snapshots_topic(aggregate_type, self.topic_prefix)
            ensure_topic(self.settings, snapshots, self.partitions, config=SNAPSHOTS_TOPIC_CONFIG)
            # A missing ACL is told now, by the broker's answer, before the group is joined.
            for name in (topic, snapshots):
                check_topic_operations(
                    self.settings, name, ("READ", "WRITE"), "the grouped store cannot write", 30.0
                )
        self._record_limits = limits
        self.ownership.start(timeout)
        self._started = True
        return self

    def wait_serving(self, timeout: float) -> bool:
        """Whether every partition owned now serves within ``timeout`` seconds."""
        with self._lock:
            writers = list(self._writers.values())
        return all(w.wait_ready(timeout) and w.state is WriterState.SERVING for w in writers)

    def close(self) -> None:
        """Release every partition (finishing queued appends) and leave the group."""
        self._closed = True
        self.ownership.close()
        self._release(list(self._writers))
        with self._lock:
            retiring, self._retiring = list(self._retiring.values()), {}
        for writer in retiring:  # released while restoring: let them end, close their files
            writer.close()

    @property
    def owned(self) -> dict[tuple[str, int], SnapshotPartitionWriter]:
        """The writers of the partitions this member owns now (a copy)."""
        with self._lock:
            return dict(self._writers)

    # -- ownership callbacks (membership thread) ----------------------------------------
    def _take(self, partitions: list[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            writer = self._new_writer(topic, partition)
            with self._lock:
                writer.predecessor = self._retiring.pop((topic, partition), None)
                self._writers[(topic, partition)] = writer
            writer.start()  # fences, restores and catches up on its own thread

    def _new_writer(self, topic: str, partition: int) -> SnapshotPartitionWriter:
        aggregate_type = self._types[topic]
        writer = SnapshotPartitionWriter(
            self.settings,
            topic,
            partition,
            self.aggregates[aggregate_type],
            self.codec,
            self.options,
            snapshot_topic=snapshots_topic(aggregate_type, self.topic_prefix),
            directory=self.directory,
        )
        writer.record_limit = self._record_limits.get(topic)
        writer.on_down = self.supervisor.writer_down
        if self.writer_hook is not None:
            self.writer_hook(writer)
        return writer

    # -- supervision (timer threads) -------------------------------------------------
    def _still_owned(self, key: tuple[str, int], writer: PartitionWriter) -> bool | None:
        with self._lock:
            if self._closed or self._writers.get(key) is not writer:
                return False  # released (or closed) since it went down
        if key not in self.ownership.owned:
            return False
        try:
            owner = self.owners.owner_of(*key, fresh=True)
        except StoreUnavailableError:
            return None
        return owner is not None and owner.member == self.member

    def _restart(self, key: tuple[str, int], old: PartitionWriter) -> None:
        writer = self._new_writer(*key)
        with self._lock:
            if self._closed or self._writers.get(key) is not old:
                writer.index.close()
                return
            assert isinstance(old, SnapshotPartitionWriter)
            writer.predecessor = old  # ends soon, if not already: then its file is ours
            self._writers[key] = writer
        writer.start()

    def _release(self, partitions: list[tuple[str, int]]) -> None:
        with self._lock:  # from now on: NotOwnerError
            writers = [self._writers.pop(p) for p in partitions if p in self._writers]
        for key in partitions:
            self.supervisor.forget(key)
        for writer in writers:
            # A serving writer finishes its queued appends; one still restoring has none,
            # and may be stuck in a long catch-up: do not hold the rebalance up for it.
            writer.close(
                self.settings.close_timeout_s
                if writer.state is WriterState.SERVING
                else self.settings.release_timeout_s
            )
            if not writer.stopped:
                with self._lock:  # a later owner in this process waits for it to end
                    self._retiring[(writer.topic, writer.partition)] = writer

    # -- addressing -----------------------------------------------------------------
    def _local_writer(self, topic: str, aggregate_id: str) -> SnapshotPartitionWriter:
        """The local writer of the aggregate's partition, or ``NotOwnerError``."""
        partition = self._partition(aggregate_id)
        with self._lock:
            writer = self._writers.get((topic, partition))
        if writer is None:
            raise self._not_owner(topic, partition, aggregate_id)
        return writer

    def _not_owner(self, topic: str, partition: int, aggregate_id: str) -> NotOwnerError:
        try:
            owner = self.owners.owner_of(topic, partition)
        except StoreUnavailableError:
            owner = None
        named = f"owned by {owner}" if owner else "unassigned (a rebalance is in progress)"
        return NotOwnerError(
            f"writer {self.member!r} does not own {topic}[{partition}] of aggregate "
            f"{aggregate_id!r}; it is {named}: send the command to its owner "
            "(GroupRouter does) or retry after the rebalance"
        )

    # -- the port -------------------------------------------------------------------
    def _answer(
        self, writer: PartitionWriter, future: Future[AppendResult]
    ) -> Future[AppendResult]:
        return fenced_as_not_owner(future, writer.where, self.member)

    def _serving(self, aggregate_type: str, aggregate_id: str) -> PartitionWriter:
        writer = super()._serving(aggregate_type, aggregate_id)
        if writer.state is not WriterState.SERVING:
            raise StoreUnavailableError(
                f"writer {self.member!r} is taking over {writer.where} ({writer.state}: "
                "fencing, restoring snapshots, catching up); retry shortly"
            )
        return writer
