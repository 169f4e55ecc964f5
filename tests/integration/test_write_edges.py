"""The write path at its edges: fences, superseded writers, recovery (issue 11, cases 1-4).

Every append ends as written, nothing written, or uncertain (``UncertainCommitError``);
a partition is never left without a writer while its owner lives; a writer that lost its
partition never fences the new owner; reads never see a commit's outcome half-known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from eventsource.errors import (
    NotOwnerError,
    StoreUnavailableError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import (
    GroupedKafkaEventStore,
    GroupRouter,
    KafkaEventStore,
    serve_routing,
)
from eventsource.store.kafka.options import WriterState
from eventsource.store.kafka.producer import dispose, new_producer
from eventsource.store.kafka.scaleout.supervision import RestartPolicy
from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.partitioner import partition_for_id
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.integration.partition_records import read_partition

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
        r.offset() for r in read_partition(settings, writer.topic, writer.partition)[-2:]
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
    before = len(read_partition(settings, writer.topic, writer.partition))
    with pytest.raises(NotOwnerError, match="nothing was written"):
        single.append(ACCOUNT, "acc-3", [deposit()], 1)
    assert len(read_partition(settings, writer.topic, writer.partition)) == before


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


# -- case 2: a fenced or failed writer on a partition still owned is started again --------
def restarts(writer: PartitionWriter, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "eventsource_writer_restarts_total",
        {"topic": writer.topic, "partition": str(writer.partition), "outcome": outcome},
    )
    return value or 0.0


def append_when_served(
    store: GroupedKafkaEventStore, aggregate_id: str, expected: int, timeout: float
) -> int:
    """Append one deposit, retrying while the partition's writer is being restarted."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return store.append(ACCOUNT, aggregate_id, [deposit()], expected).version
        except (NotOwnerError, StoreUnavailableError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{aggregate_id} not served within {timeout:.0f}s") from exc
            time.sleep(0.2)


def test_a_member_whose_writer_was_fenced_from_outside_serves_its_partition_again(
    single: GroupedKafkaEventStore, settings: KafkaSettings
) -> None:
    single.append(ACCOUNT, "acc-5", [OPENED], 0)
    writer = single.writer_for(ACCOUNT, "acc-5")
    before = restarts(writer, "retried")
    fence_from_outside(settings, writer)
    assert append_when_served(single, "acc-5", 1, timeout=120) == 2
    assert single.writer_for(ACCOUNT, "acc-5") is not writer
    assert restarts(writer, "retried") == before + 1
    assert single.version(ACCOUNT, "acc-5") == 2


def test_a_member_that_cannot_serve_a_partition_gives_it_up_to_another_member(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    broken = grouped(settings, prefix, "w-broken", tmp_path)
    broken.supervisor.policy = RestartPolicy(attempts=2, first_backoff=0.2, rejoin_after=120)

    def never_fences(writer: PartitionWriter) -> None:
        def hook(stage: str) -> None:
            if stage == "before_init":
                raise RuntimeError("injected: this member cannot reach the coordinator")

        writer.fault_hook = hook

    broken.writer_hook = never_fences
    with broken.start(), grouped(settings, prefix, "w-good", tmp_path).start() as good:
        wait_until(
            lambda: len(good.owned) == PARTITIONS and good.wait_serving(5),
            120,
            "the healthy member took every partition the broken one gave up",
        )
        aggregate = next(
            f"acc-{n}" for n in range(100) if partition_for_id(f"acc-{n}", PARTITIONS) == 0
        )
        assert good.append(ACCOUNT, aggregate, [OPENED], 0).version == 1
    gave_up = sum(
        REGISTRY.get_sample_value(
            "eventsource_writer_restarts_total",
            {"topic": f"{prefix}{ACCOUNT}.events", "partition": str(p), "outcome": "gave_up"},
        )
        or 0.0
        for p in range(PARTITIONS)
    )
    assert gave_up >= 1


# -- case 3: a writer that lost its partition never fences the new owner -----------------
def test_a_writer_released_before_it_fenced_never_fences_the_partitions_new_owner(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    gate = threading.Event()
    held: list[PartitionWriter] = []

    def hold_before_init(writer: PartitionWriter) -> None:
        held.append(writer)

        def hook(stage: str) -> None:
            if stage == "before_init":
                writer.fault_hook = None
                gate.wait(120)

        writer.fault_hook = hook

    first = grouped(settings, prefix, "w-first", tmp_path)
    first.writer_hook = hold_before_init
    with first.start(), grouped(settings, prefix, "w-second", tmp_path).start() as second:
        wait_until(
            lambda: bool(second.owned) and second.wait_serving(5),
            120,
            "the second member serves the partitions the first one released",
        )
        moved = sorted(second.owned)[0]
        aggregate = next(
            f"acc-{n}" for n in range(100) if partition_for_id(f"acc-{n}", PARTITIONS) == moved[1]
        )
        new_writer = second.writer_for(ACCOUNT, aggregate)
        released = [w for w in held if (w.topic, w.partition) == moved]
        assert released, "the first member had a writer of the moved partition"
        gate.set()  # the released writer goes on: it must not run init_transactions
        wait_until(lambda: all(w.stopped for w in released), 60, "it ended")
        assert second.append(ACCOUNT, aggregate, [OPENED], 0).version == 1
        assert second.writer_for(ACCOUNT, aggregate) is new_writer
        assert new_writer.state is WriterState.SERVING


# -- case 4: no stale or half-applied answers while a commit's outcome is established ----
def test_reads_during_recovery_wait_for_the_outcome_and_see_a_multi_event_append_whole(
    settings: KafkaSettings, unique_name: str
) -> None:
    seen: list[object] = []

    def read(store: KafkaEventStore) -> None:
        try:
            seen.append(store.version(ACCOUNT, "acc-7"))
            seen.append(store.load(Account, "acc-7").version)
        except StoreUnavailableError as exc:  # retriable: allowed, never a stale answer
            seen.append(exc)

    with KafkaEventStore(
        settings, [Account], partitions=1, topic_prefix=f"{unique_name}."
    ) as store:
        store.append(ACCOUNT, "acc-7", [OPENED], 0)
        writer = store.writer_for(ACCOUNT, "acc-7")
        stages: list[str] = []

        def hook(stage: str) -> None:
            stages.append(stage)
            if stage == "after_commit":  # committed, but the writer does not know
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
            if stage == "before_init":  # recovering: a reader arrives now
                writer.fault_hook = None
                reader = threading.Thread(target=read, args=(store,))
                reader.start()
                reader.join(2.0)  # a stale answer comes at once; a correct one waits

        writer.fault_hook = hook
        result = store.append(ACCOUNT, "acc-7", [deposit(), deposit(2)], 1)
        assert result.version == 3
        wait_until(
            lambda: len(seen) >= 1 and (len(seen) == 2 or isinstance(seen[0], Exception)),
            30,
            "the reader answered",
        )
    assert "before_init" in stages
    assert all(isinstance(s, StoreUnavailableError) or s == 3 for s in seen), seen
