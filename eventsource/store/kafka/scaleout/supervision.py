"""A partition is never left without a writer while its owner lives.

A grouped writer that stops fenced (a stale producer with its ``transactional.id``) or
failed (an ``init_transactions`` timeout, a catch-up stall, a SQLite error) on a partition
its process still owns is started again, after a backoff; a writer that cannot serve after
``attempts`` tries in a row gives the partition up: the member leaves the writers group
and joins again, so the group can assign the partition to another member. Each retry and
give-up is a log line and a count of ``eventsource_writer_restarts_total{topic,partition,
outcome}`` (``outcome`` = ``retried`` or ``gave_up``).

Before starting a new writer (whose ``init_transactions`` fences every other producer of
the partition) the supervisor checks that this member still owns the partition, locally
and in the group's description: a member that lost it never fences its new owner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from eventsource.store.kafka.writer import PartitionWriter

__all__ = ["WRITER_RESTARTS", "PartitionSupervisor", "RestartPolicy"]

log = logging.getLogger(__name__)

WRITER_RESTARTS = Counter(
    "eventsource_writer_restarts",
    "Writers of owned partitions started again after they stopped fenced or failed "
    "(outcome=retried), or partitions given up to the group after repeated failures "
    "(outcome=gave_up).",
    ["topic", "partition", "outcome"],
)

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """``attempts`` restarts in a row without serving, waiting ``first_backoff`` seconds
    before the first and doubling up to ``max_backoff``; then the partition is given up:
    the member leaves the group and rejoins ``rejoin_after`` seconds later."""

    attempts: int = 5
    first_backoff: float = 0.5
    max_backoff: float = 10.0
    rejoin_after: float = 30.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.first_backoff * 2 ** (attempt - 1), self.max_backoff))


class PartitionSupervisor:
    """Restarts the writers of one member's partitions, or gives a partition up.

    ``still_owned(key, writer)`` says whether ``writer`` is still the member's writer of the
    partition and the group still assigns it to this member (``None``: cannot tell now);
    ``restart(key, writer)`` starts its successor; ``give_up(key)`` leaves and rejoins.
    """

    def __init__(
        self,
        member: str,
        policy: RestartPolicy,
        *,
        still_owned: Callable[[Key, PartitionWriter], bool | None],
        restart: Callable[[Key, PartitionWriter], None],
        give_up: Callable[[Key], None],
    ) -> None:
        self.member = member
        self.policy = policy
        self._still_owned = still_owned
        self._restart = restart
        self._give_up = give_up
        self._failures: dict[Key, int] = {}
        self._lock = threading.Lock()

    def writer_down(self, writer: PartitionWriter) -> None:
        """Called on the writer's thread when it stops fenced or failed, not closed."""
        key = (writer.topic, writer.partition)
        with self._lock:
            attempt = 1 if writer.served else self._failures.get(key, 0) + 1
            self._failures[key] = attempt
        why = f"{writer.state}: {writer.start_error or 'fenced by another producer'}"
        if attempt > self.policy.attempts:
            with self._lock:
                self._failures.pop(key, None)
            WRITER_RESTARTS.labels(writer.topic, str(writer.partition), "gave_up").inc()
            log.error(
                "writer %s cannot serve %s after %d attempts (%s): giving the partition up to "
                "the writers group (leaving and rejoining)",
                self.member,
                writer.where,
                self.policy.attempts,
                why,
            )
            self._give_up(key)
            return
        delay = self.policy.backoff(attempt)
        log.warning(
            "the writer of %s stopped (%s) while writer %s owns it: starting it again in "
            "%.1fs (attempt %d of %d)",
            writer.where,
            why,
            self.member,
            delay,
            attempt,
            self.policy.attempts,
        )
        timer = threading.Timer(delay, self._retry, (key, writer))
        timer.name = f"restart-{writer.topic}-{writer.partition}"
        timer.daemon = True
        timer.start()

    def forget(self, key: Key) -> None:
        """The partition was released: its failures no longer count."""
        with self._lock:
            self._failures.pop(key, None)

    def _retry(self, key: Key, writer: PartitionWriter) -> None:
        owned = self._still_owned(key, writer)
        if owned is None:  # the group cannot be described now: count it as a failed try
            self.writer_down(writer)
            return
        if not owned:
            log.info(
                "the writer of %s is not restarted: writer %s no longer owns it",
                writer.where,
                self.member,
            )
            return
        WRITER_RESTARTS.labels(writer.topic, str(writer.partition), "retried").inc()
        self._restart(key, writer)
