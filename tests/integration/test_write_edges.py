"""The write path at its edges: fences, superseded writers, recovery (issue 11, cases 1-4).

Every append ends as written, nothing written, or uncertain (``UncertainCommitError``);
a partition is never left without a writer while its owner lives; a writer that lost its
partition never fences the new owner; reads never see a commit's outcome half-known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from eventsource.errors import (
    NotOwnerError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import GroupedKafkaEventStore, GroupRouter, serve_routing
from eventsource.store.kafka.producer import dispose, new_producer
from eventsource.store.kafka.writer import PartitionWriter
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
PARTITIONS = 2
OPENED = AccountOpened(owner="Ada")


def deposit(amount: int = 1) -> MoneyDeposited:
    return MoneyDeposited(amount=Decimal(amount))


@pytest.fixture
def settings(kafka_settings: KafkaSettings, unique_name: str) -> KafkaSettings:
    return kafka_settings.model_copy(
        update={"application_id": unique_name, "delivery_timeout_ms": 10_000}
    )


def grouped(settings: KafkaSettings, prefix: str, name: str, root: Path) -> GroupedKafkaEventStore:
    return GroupedKafkaEventStore(
        settings,
        [Account],
        directory=root / name,
        member=name,
        partitions=PARTITIONS,
        topic_prefix=prefix,
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


def fence_from_outside(settings: KafkaSettings, writer: PartitionWriter) -> None:
    """What a stale or rogue process does: ``init_transactions`` with the writer's id."""
    dispose(new_producer(settings, writer.transactional_id, 30.0))


def committed_records(settings: KafkaSettings, writer: PartitionWriter) -> list[Message]:
    """Every committed record of the writer's partition (read_committed, to the end)."""
    consumer = Consumer(settings.consumer_config("reader", **{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(writer.topic, writer.partition, 0)])
    records: list[Message] = []
    try:
        while True:
            message = consumer.poll(10)
            assert message is not None, f"no end of {writer.where} within 10s"
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                return records
            assert error is None, error
            records.append(message)
    finally:
        consumer.close()


@pytest.fixture
def single(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> Iterator[GroupedKafkaEventStore]:
    with grouped(settings, f"{unique_name}.", "w-a", tmp_path).start() as store:
        wait_until(
            lambda: len(store.owned) == PARTITIONS and store.wait_serving(5),
            120,
            "the only member serves every partition",
        )
        yield store


# -- case 1: a fence during a commit is never reported as "nothing written" ----------------
def fenced_after_the_commit(writer: PartitionWriter, commits: list[str]) -> Callable[[str], None]:
    """The commit happened, but the writer hears of a fence (a lost reply, then fenced)."""

    def hook(stage: str) -> None:
        if stage == "after_commit":
            commits.append(stage)
            if len(commits) == 1:
                raise KafkaException(KafkaError(KafkaError._FENCED))

    return hook


def test_a_commit_that_happened_before_a_fence_is_reported_written_not_moved(
    single: GroupedKafkaEventStore, settings: KafkaSettings
) -> None:
    single.append(ACCOUNT, "acc-1", [OPENED], 0)
    writer = single.writer_for(ACCOUNT, "acc-1")
    commits: list[str] = []
    writer.fault_hook = fenced_after_the_commit(writer, commits)
    result = single.append(ACCOUNT, "acc-1", [deposit(), deposit(2)], 1)
    assert result.version == 3
    assert [p.offset for p in result.positions] == [
        r.offset() for r in committed_records(settings, writer)[-2:]
    ]


def test_a_fence_before_the_commit_is_nothing_written_and_names_the_new_owner_route(
    single: GroupedKafkaEventStore, settings: KafkaSettings
) -> None:
    single.append(ACCOUNT, "acc-3", [OPENED], 0)
    writer = single.writer_for(ACCOUNT, "acc-3")

    def fence_at_commit(stage: str) -> None:
        if stage == "commit":
            writer.fault_hook = None
            fence_from_outside(settings, writer)  # aborts the open transaction

    writer.fault_hook = fence_at_commit
    before = len(committed_records(settings, writer))
    with pytest.raises(NotOwnerError, match="nothing was written"):
        single.append(ACCOUNT, "acc-3", [deposit()], 1)
    assert len(committed_records(settings, writer)) == before


def test_the_router_never_retries_an_append_that_was_fenced_during_its_commit(
    single: GroupedKafkaEventStore, settings: KafkaSettings
) -> None:
    single.append(ACCOUNT, "acc-2", [OPENED], 0)
    writer = single.writer_for(ACCOUNT, "acc-2")
    commits: list[str] = []
    with (
        serve_routing(single),
        GroupRouter(
            settings,
            single.codec,
            partitions=PARTITIONS,
            topic_prefix=single.topic_prefix,
            timeout=20,
        ) as router,
    ):
        writer.fault_hook = fenced_after_the_commit(writer, commits)
        result = router.append(ACCOUNT, "acc-2", [deposit()], 1)
    assert result.version == 2
    assert commits == ["after_commit"], "the router sent the append again"
