"""``next_batch``: what a consumer has now, without waiting out ``consume()``'s timeout."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import close_consumer, next_batch
from eventsource.kafka.metadata import existing_topics


class _Consumer:
    """Records the calls; ``poll`` hands out the first queued record, ``consume`` the rest."""

    def __init__(self, queued: list[str]) -> None:
        self.queued = list(queued)
        self.calls: list[tuple[str, Any, ...]] = []

    def poll(self, timeout: float) -> str | None:
        self.calls.append(("poll", timeout))
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append(("consume", num_messages, timeout))
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_nothing_available_waits_only_in_poll_and_returns_empty() -> None:
    consumer = _Consumer([])
    assert next_batch(consumer, 0.5, 100) == []  # type: ignore[arg-type]
    assert consumer.calls == [("poll", 0.5)]


def test_records_already_fetched_are_taken_without_waiting_for_a_full_batch() -> None:
    consumer = _Consumer(["a", "b", "c"])
    assert next_batch(consumer, 0.5, 100) == ["a", "b", "c"]  # type: ignore[arg-type]
    # the drain never blocks: consume(n, timeout) would wait its whole timeout for n records
    assert consumer.calls == [("poll", 0.5), ("consume", 99, 0)]


def test_the_batch_never_exceeds_max_messages() -> None:
    consumer = _Consumer([str(i) for i in range(10)])
    assert next_batch(consumer, 0.1, 4) == ["0", "1", "2", "3"]  # type: ignore[arg-type]
    assert next_batch(consumer, 0.1, 1) == ["4"]  # type: ignore[arg-type]
    assert consumer.queued == ["5", "6", "7", "8", "9"]


class _Metadata:
    def __init__(self, topics: dict[str, Any]) -> None:
        self.topics = topics


class _Topic:
    def __init__(self, partitions: dict[int, object], error: object = None) -> None:
        self.partitions, self.error = partitions, error


class _MetadataConsumer:
    def __init__(self, cluster: dict[str, _Topic]) -> None:
        self.cluster, self.asked = cluster, []  # type: list[str | None]

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Metadata:
        self.asked.append(topic)
        if topic is None:
            return _Metadata(dict(self.cluster))
        missing = _Topic({}, error="UNKNOWN_TOPIC_OR_PART")
        return _Metadata({topic: self.cluster.get(topic, missing)})


def test_existing_topics_asks_for_the_named_topics_only() -> None:
    cluster = {f"other-{i}": _Topic({0: None}) for i in range(3000)}
    cluster["accounts.events"] = _Topic({0: None, 1: None})
    cluster["empty"] = _Topic({})
    consumer = _MetadataConsumer(cluster)
    found = existing_topics(consumer, ["accounts.events", "missing", "empty"], 1.0)  # type: ignore[arg-type]
    assert found["accounts.events"] is cluster["accounts.events"]
    assert found["missing"] is None and found["empty"] is None
    # never the whole cluster's metadata (thousands of topics on a shared cluster)
    assert consumer.asked == ["accounts.events", "missing", "empty"]


def test_consumers_do_not_hold_offset_requests_behind_a_long_idle_fetch() -> None:
    # The broker answers a connection's requests in order: behind librdkafka's default
    # 500 ms idle fetch, every end-offsets query of run_until_caught_up waited ~0.5 s.
    config = KafkaSettings(bootstrap_servers="127.0.0.1:9").consumer_config("g")
    assert config["fetch.wait.max.ms"] <= 100


class _HangingConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()

    def close(self) -> None:
        self.release.wait()  # librdkafka issue 4884: assign() in close() never returns


def test_a_close_that_hangs_is_abandoned_after_the_timeout_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = _HangingConsumer()
    try:
        assert close_consumer(consumer, timeout=0.05, what="consumer of p") is False  # type: ignore[arg-type]
    finally:
        consumer.release.set()
    assert "closing the consumer of p did not finish" in caplog.text


def test_a_close_that_finishes_reports_it() -> None:
    consumer = _HangingConsumer()
    consumer.release.set()
    assert close_consumer(consumer, timeout=5.0) is True  # type: ignore[arg-type]
