"""The runner's place in its consumer group: one consumer, what it owns, where it starts.

- Consumer group ``<application_id>.projection.<name>.v<version>``, ``read_committed``
  (events of aborted write transactions are never seen), no auto commit.
- **Eager rebalancing** (the librdkafka default ``range,roundrobin``): on assignment the
  member reads its checkpoints from the read-model database and starts each partition
  there (``auto.offset.reset`` never decides). Eager was chosen because the runner finishes
  and commits every batch *before* calling ``consume`` again, and librdkafka runs rebalance
  callbacks only inside ``consume``: on revoke there is never a half-applied batch, so a
  full revoke costs nothing but the refetch. The new owner resumes from the checkpoint.
- Offsets are also committed to Kafka (asynchronously, after the database commit) so that
  standard lag tooling works; they are never read back.
- Consumer errors: a refused login or a missing ACL is raised (retrying cannot help), as is
  being fenced by another consumer with the same ``group.instance.id``
  (``DuplicateInstanceError``: two replicas share an instance id); any other fatal error
  stops the runner, a lost broker is reported until one answers again.
"""

from __future__ import annotations

import logging
import time
from operator import methodcaller
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from sqlalchemy import Engine

from eventsource.errors import ConfigurationError, ProjectionError
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
from eventsource.kafka.static_member import duplicate_instance, fenced_instance, is_fatal
from eventsource.projection.checkpoints import TopicPartition as TP
from eventsource.projection.checkpoints import ensure_checkpoint_rows, read_checkpoints
from eventsource.projection.dberrors import retry_transient
from eventsource.projection.definition import Projection
from eventsource.projection.offsets import check_within_topic, positions
from eventsource.projection.types import RunnerListener

__all__ = ["GroupMember", "checked_overrides", "default_group_id"]

log = logging.getLogger(__name__)

_error = methodcaller("error")

#: Where a projector's instance id comes from (named in ``DuplicateInstanceError``).
_INSTANCE_ID_FROM = "--instance-id, EVENTSOURCE_INSTANCE_ID, -X group.instance.id or the pod name"

#: Consumer settings the exactly-once argument rests on; overrides may not change them.
_FIXED = {"isolation.level": "read_committed", "enable.auto.commit": False}


def checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` of the runner's consumer settings, refused if they break exactly-once."""
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


class GroupMember:
    """One consumer of a projection's group: joined on first use, left by :meth:`leave`."""

    def __init__(
        self,
        projection: Projection,
        settings: KafkaSettings,
        engine: Engine,
        group_id: str,
        listener: RunnerListener,
        overrides: dict[str, Any],
        *,
        commit_offsets_to_kafka: bool,
    ) -> None:
        self.projection = projection
        self.settings = settings
        self.engine = engine
        self.group_id = group_id
        self.listener = listener
        self.commit_offsets_to_kafka = commit_offsets_to_kafka
        self._overrides = overrides
        self._consumer: Consumer | None = None
        self.assigned: set[TP] = set()
        #: Per owned partition, the next offset the read model has (checkpoint or batch).
        self.applied: dict[TP, int] = {}
        self.closed = False
        self._revoked = False
        self._broker_lost = False  # set by error_cb; cleared once a broker answers again
        self._refused: KafkaError | None = None  # a refused login, seen by error_cb

    def poll(self, timeout: float, max_records: int) -> tuple[list[Any], dict[TP, int]]:
        """The next records of owned partitions, and the consumer's positions after them."""
        consumer = self.consumer()
        self._revoked = False
        if self._broker_lost and self._broker_back(consumer):
            self.listener.on_batch(0, 0.0)  # progress again: clears the reported error
        messages = next_batch(consumer, timeout, max_records)
        if self._refused is not None:
            self.leave()
            raise authentication_error(self.settings, self._refused)
        if not self._revoked and not any(map(_error, messages)):
            good = messages  # the common case: no errors, the assignment did not shrink
        else:
            good = self._usable(messages)
        return good, self.positions()

    def positions(self) -> dict[TP, int]:
        """The consumer's next offset per owned partition (where it has one)."""
        return positions(self.consumer(), self.assigned)

    def at_end(self) -> bool:
        """Every owned partition applied up to its (cached) high watermark."""
        consumer = self.consumer()
        for topic, partition in self.assigned:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high < 0 or high > self.applied.get((topic, partition), 0):
                return False  # not known yet, or behind
        return True

    def commit(self, offsets: dict[TP, int]) -> None:
        """Tell Kafka the applied offsets of owned partitions (for lag tooling only)."""
        if not self.commit_offsets_to_kafka or self._consumer is None:
            return
        owned = [
            TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.assigned
        ]
        if owned:
            try:
                self._consumer.commit(offsets=owned, asynchronous=True)
            except KafkaException as exc:  # lag tooling only; the database is the truth
                log.debug("offset commit to Kafka failed: %s", exc)

    def consumer(self) -> Consumer:
        """The consumer, subscribed on first use (after checking its ACLs)."""
        if self.closed:
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

    def leave(self) -> None:
        """Close the consumer, leaving the group (a later :meth:`consumer` joins again)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            close_consumer(consumer, what=f"consumer of projection {self.projection.name!r}")
            self.assigned.clear()

    def _usable(self, messages: list[Any]) -> list[Any]:
        """Records of owned partitions; consumer errors are raised or reported."""
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                if (message.topic(), message.partition()) in self.assigned:
                    good.append(message)
                continue
            if error.code() in AUTHORIZATION_CODES:
                self.leave()
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
            if fenced_instance(error):
                self.leave()
                raise duplicate_instance(self.group_id, self._instance_id(), _INSTANCE_ID_FROM)
            if is_fatal(error):  # the consumer is dead: the supervisor starts a new runner
                self.leave()
                raise ProjectionError(f"Kafka consumer failed: {error.str()}")
            if error.code() != KafkaError._PARTITION_EOF:
                self.listener.on_error(client_error(self.settings, error))
        return good

    def _instance_id(self) -> str:
        return str(
            self._overrides.get("group.instance.id")
            or self.settings.kafka_extra.get("group.instance.id")
        )

    def _on_client_error(self, error: KafkaError) -> None:
        # librdkafka reconnects by itself; meanwhile say why nothing moves (/readyz).
        if is_login_failure(error):
            self._refused = error  # retrying cannot help: the next poll raises it
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
        self.assigned = set(tps)
        self.applied.update(stored)
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
        self.assigned.difference_update(tps)
        self.listener.on_revoked(tps)
