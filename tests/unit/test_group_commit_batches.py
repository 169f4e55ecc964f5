"""How a partition writer cuts its queue into group commits (no broker: the queue only)."""

from __future__ import annotations

from decimal import Decimal

from eventsource.codec import EventCodec
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.options import WriterOptions, WriterState
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.kafka.writer import PartitionWriter
from examples.bank.domain import Account, MoneyDeposited

DEPOSIT = MoneyDeposited(amount=Decimal(1))


def writer(max_batch_events: int) -> PartitionWriter:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", application_id="batches")
    options = WriterOptions(max_batch_events=max_batch_events).resolved(settings)
    codec = EventCodec.for_events(Account.event_types())
    partition_writer = PartitionWriter(settings, "t.events", 0, Account, codec, options)
    partition_writer.state = WriterState.SERVING  # never started: only its queue is used
    return partition_writer


def queue(partition_writer: PartitionWriter, *sizes: int) -> list[AppendRequest]:
    requests = [
        AppendRequest(
            aggregate_type=Account.aggregate_type,
            aggregate_id=f"acc-{n}",
            events=(DEPOSIT,) * size,
            payloads=(b"",) * size,
            event_ids=("id",) * size,
            expected_version=0,
            condition=partition_writer.lock,
        )
        for n, size in enumerate(sizes)
    ]
    partition_writer.submit_all(requests)
    return requests


def sizes(batch: list[AppendRequest] | None) -> list[int]:
    assert batch is not None
    return [len(request.events) for request in batch]


def test_everything_queued_is_one_group_commit_when_it_fits() -> None:
    partition_writer = writer(max_batch_events=4)
    requests = queue(partition_writer, 1, 2, 1)
    batch = partition_writer._take_batch()
    assert batch == requests and all(request.running() for request in requests)
    assert not partition_writer._queue


def test_a_group_commit_stops_before_the_request_that_would_exceed_the_bound() -> None:
    partition_writer = writer(max_batch_events=3)
    queue(partition_writer, 2, 2, 1, 5, 1)
    assert sizes(partition_writer._take_batch()) == [2]
    assert sizes(partition_writer._take_batch()) == [2, 1]
    assert sizes(partition_writer._take_batch()) == [5]  # larger than the bound: alone
    assert sizes(partition_writer._take_batch()) == [1]


def test_a_request_cancelled_while_queued_is_left_out_of_its_group_commit() -> None:
    partition_writer = writer(max_batch_events=10)
    first, cancelled, last = queue(partition_writer, 1, 1, 1)
    assert cancelled.cancel()
    assert partition_writer._take_batch() == [first, last]
    assert cancelled.cancelled() and not partition_writer._queue
