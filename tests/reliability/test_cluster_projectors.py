"""Two projector members on a real three-node cluster: their group coordinator dies.

Two :class:`ProjectionRunner` members with the consumer settings of ``eventsource run``
(:func:`eventsource.service.runtime.membership`) share a backlog of bank events, slowed
down so that they are still applying it when the node that coordinates their consumer
group is killed with ``kill -9``. The topic's replicas live on the two other nodes, so
their fetches never wait for a leader's failover: only the group's own behaviour is
measured. The members must keep their partitions through the failover (no rebalance: a
lost session would revoke every partition and pause the projection until the new
coordinator let them back in), and the read model must equal the fold of the topic, every
event applied exactly once. The stall (the longest time without an applied batch from the
kill on, and when the batch that ended it came) is printed beside the controller's fencing
time, not asserted.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventsource.kafka.client_logs import admin_log_config
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    NullListener,
    ProjectionRunner,
    default_group_id,
    projection_status,
)
from eventsource.service.runtime import membership
from eventsource.service.settings import ServiceSettings
from eventsource.testing.seed import seed_events
from examples.bank.projections import AccountBalances, sample_history
from tests.e2e.conftest import read_balances
from tests.e2e.helpers import expected_balances, read_topic
from tests.reliability.cluster_load import cluster_settings, group_coordinator_of, kill, report

pytestmark = [pytest.mark.integration, pytest.mark.kafka_cluster, pytest.mark.slow]

PARTITIONS = 4
EVENTS = 20_000  # a backlog that outlasts the failover at the slowed-down rate
BATCH = 25
PAUSE_S = 0.2  # after each batch while measuring: at most 125 events/s per member


class Watch(NullListener):
    """When each batch was applied and each assignment changed; slows batches while ``slow``."""

    def __init__(self, slow: threading.Event) -> None:
        self.slow = slow
        self.lock = threading.Lock()
        self.batches: list[float] = []
        self.applied = 0
        self.owned: set[tuple[str, int]] = set()
        self.changes: list[tuple[float, str, int]] = []

    def on_assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        with self.lock:
            self.owned = set(partitions)
            self.changes.append((time.monotonic(), "assigned", len(partitions)))

    def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        with self.lock:
            self.owned -= set(partitions)
            if partitions:
                self.changes.append((time.monotonic(), "revoked", len(partitions)))

    def on_batch(self, n_events: int, seconds: float) -> None:
        with self.lock:
            self.batches.append(time.monotonic())
            self.applied += n_events
        if self.slow.is_set():
            time.sleep(PAUSE_S)

    def since(self, moment: float) -> list[str]:
        """Assignment changes after ``moment``: ``"revoked 2 at +11.2s"``."""
        with self.lock:
            return [
                f"{what} {n} at +{t - moment:.1f}s" for t, what, n in self.changes if t > moment
            ]


def create_topic_off(cluster: LocalKafkaCluster, topic: str, victim: int) -> None:
    """``topic`` with two replicas on the nodes other than ``victim``, leaders alternating."""
    a, b = (n.node_id for n in cluster.nodes if n.node_id != victim)
    replicas = [[a, b] if p % 2 == 0 else [b, a] for p in range(PARTITIONS)]
    admin = AdminClient(admin_log_config({"bootstrap.servers": cluster.bootstrap_servers}))
    new = NewTopic(topic, num_partitions=PARTITIONS, replica_assignment=replicas)
    admin.create_topics([new], operation_timeout=30)[topic].result(timeout=60)
    cluster.wait_in_sync(60)


@contextmanager
def running(runner: ProjectionRunner) -> Iterator[list[BaseException]]:
    """``runner.run`` in a thread until the block ends; yields the errors it raised."""
    stop, errors = threading.Event(), []

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"projector-{id(runner)}", daemon=True)
    with runner:
        thread.start()
        try:
            yield errors
        finally:
            stop.set()
            thread.join(60)


def wait_until(condition: Callable[[], object], timeout: float, what: str, *watches: Watch) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            owned = [sorted(w.owned) for w in watches]
            raise AssertionError(f"no {what} within {timeout:.0f} s (owned: {owned})")
        time.sleep(0.1)


def shared(a: Watch, b: Watch) -> bool:
    """Both members own partitions, every partition once between them."""
    with a.lock, b.lock:
        return bool(a.owned and b.owned) and len(a.owned | b.owned) == PARTITIONS


def longest_gap(times: list[float], since: float, until: float) -> tuple[float, float]:
    """The longest time without an applied batch from ``since`` to ``until``, and when
    (seconds after ``since``) the batch that ended it was applied."""
    before = [t for t in times if t <= since]
    points = [before[-1] if before else since, *(t for t in times if since < t <= until), until]
    start, end = max(itertools.pairwise(points), key=lambda pair: pair[1] - pair[0])
    return end - start, end - since


def applied_after(watch: Watch, moment: float) -> float | None:
    with watch.lock:
        return next((t for t in watch.batches if t > moment), None)


def test_projector_members_keep_their_partitions_when_their_group_coordinator_is_killed(
    kafka_cluster: LocalKafkaCluster, unique_name: str, tmp_path: Path
) -> None:
    settings: KafkaSettings = cluster_settings(kafka_cluster, unique_name)
    topic = f"{unique_name}.events"
    name = f"pf_{unique_name[-8:]}"  # a projection name is at most 41 characters
    database_url = f"sqlite:///{tmp_path / 'read_model.db'}"
    overrides = membership(settings, ServiceSettings(database_url=database_url))
    group = default_group_id(settings, AccountBalances(name=name, topics=[topic]))
    config = settings.consumer_config(group, **overrides)  # -X settings included
    victim = group_coordinator_of(kafka_cluster, group)
    create_topic_off(kafka_cluster, topic, victim)
    seed_events(settings, topic, sample_history(60, EVENTS, seed=11))

    slow = threading.Event()
    slow.set()
    a, b = Watch(slow), Watch(slow)
    runners = [
        ProjectionRunner(
            AccountBalances(name=name, topics=[topic]),
            settings,
            database_url,
            batch_size=BATCH,
            poll_timeout=0.2,
            listener=watch,
            consumer_overrides=overrides,
        )
        for watch in (a, b)
    ]
    with running(runners[0]) as errors_a, running(runners[1]) as errors_b:
        wait_until(lambda: shared(a, b) and a.batches and b.batches, 120, "shared group", a, b)
        assert group_coordinator_of(kafka_cluster, group) == victim
        killed_at, fenced = kill(kafka_cluster, victim)
        # A member whose session is lost drops its partitions at most a session timeout
        # after its last heartbeat; the new coordinator expires members that stay silent a
        # session timeout after it loaded the group: watch until both could have happened.
        session_s = float(config.get("session.timeout.ms", 45_000)) / 1000
        window_end = killed_at + fenced + session_s + 5
        time.sleep(max(0.0, window_end - time.monotonic()))  # the observation window
        changes = {"a": a.since(killed_at), "b": b.since(killed_at)}
        # Still slowed down: until both apply again (a stall may outlast the window).
        wait_until(
            lambda: shared(a, b) and applied_after(a, window_end) and applied_after(b, window_end),
            180,
            "batch of both members after the failover",
            a,
            b,
        )
        until = max(t for t in (applied_after(a, window_end), applied_after(b, window_end)) if t)
        left = EVENTS - a.applied - b.applied
        stall, resumed = longest_gap(sorted(a.batches + b.batches), killed_at, until)
        per_member = [longest_gap(w.batches, killed_at, until)[0] for w in (a, b)]
        slow.clear()
        wait_until(lambda: shared(a, b), 180, "shared group after the failover", a, b)
        projection = runners[0].projection
        wait_until(
            lambda: all(s.lag == 0 for s in projection_status(projection, settings, database_url)),
            180,
            "catch-up",
            a,
            b,
        )
    assert errors_a == errors_b == []
    assert left > 0, "the backlog ran out before the watch ended: the figures mean nothing"
    expected = expected_balances(read_topic(settings, topic))

    report(
        f"kill -9 node {victim} (coordinator of the projector group {group}; "
        f"the topic's replicas on the two other nodes) under two members, "
        f"session.timeout.ms={config.get('session.timeout.ms', 'default')}, "
        f"heartbeat.interval.ms={config.get('heartbeat.interval.ms', 'default')}",
        kafka_cluster,
        controller_fenced_it_after=f"{fenced:.1f}s",
        longest_stall=f"{stall:.1f}s (ended at +{resumed:.1f}s)",
        longest_stall_per_member=[f"{g:.1f}s" for g in per_member],
        assignment_changes_after_kill=changes,
        events_left_at_watch_end=left,
    )
    assert read_balances(database_url, name) == expected
    assert changes == {"a": [], "b": []}, f"members lost partitions in the failover: {changes}"
