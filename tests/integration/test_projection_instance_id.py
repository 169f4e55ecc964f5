"""Two replicas with the same instance id (``group.instance.id``): the broker fences the one
that joined first when the second joins. The fenced runner stops with a configuration
error naming the duplicate instance id and the group (the service exits 2 on it), instead
of polling a dead consumer; the second keeps the partitions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventsource.errors import ConfigurationError, DuplicateInstanceError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner
from examples.bank.projections import AccountBalances

pytestmark = pytest.mark.integration


class Running:
    """A runner's ``run`` on a thread of its own; what it raised, if anything."""

    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="runner")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def end(self) -> None:
        self.stop.set()
        self.thread.join(60)
        self.runner.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_a_second_replica_with_the_same_instance_id_stops_the_first_naming_the_id(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    unique_name: str,
    tmp_path: Path,
) -> None:
    topic = create_topic(partitions=2)
    projection = AccountBalances(name="i_" + unique_name[-8:], topics=[topic])
    instance = f"{unique_name}-replica-0"

    def replica(n: int) -> ProjectionRunner:
        return ProjectionRunner(
            projection,
            kafka_settings,
            str(tmp_path / f"replica-{n}.db"),
            group_id=unique_name,
            consumer_overrides={"group.instance.id": instance},
        )

    first = Running(replica(1))
    try:
        wait_until(lambda: len(first.runner.assignment) == 2, "the first replica owns both")
        second = Running(replica(2))
        try:
            first.thread.join(60)  # the broker fences it once the second joins
            assert not first.thread.is_alive(), "the fenced replica kept running"
            wait_until(lambda: len(second.runner.assignment) == 2, "the second owns both")
            assert second.error is None
        finally:
            second.end()
    finally:
        first.end()
    error = first.error
    assert isinstance(error, DuplicateInstanceError) and isinstance(error, ConfigurationError)
    assert error.instance_id == instance and error.group_id == unique_name
    assert repr(instance) in str(error) and repr(unique_name) in str(error)
    assert "\n" not in str(error) and error.retriable is False
