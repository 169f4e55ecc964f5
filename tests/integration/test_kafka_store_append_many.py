"""``append_many`` and ``Repository.save_all`` on the Kafka store: each command alone."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from eventsource.codec import parse_headers
from eventsource.errors import (
    ApplyError,
    ConcurrencyError,
    ConfigurationError,
    StoreUnavailableError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store import AppendCall, Repository
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.partitioner import partition_for_id
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.integration.fragile import FRAGILE, Fragile, Poked, solo_grouped_store
from tests.integration.partition_records import read_partition

pytestmark = pytest.mark.integration

ACCOUNT = Account.aggregate_type
PARTITIONS = 3


def deposit(amount: str) -> MoneyDeposited:
    return MoneyDeposited(amount=Decimal(amount))


def versions_on_topic(settings: KafkaSettings, topic: str, aggregate_id: str) -> list[int]:
    """The ``ce_sequence`` of every committed record of ``aggregate_id``, in order."""
    records = read_partition(settings, topic, partition_for_id(aggregate_id, PARTITIONS))
    return [
        parse_headers(r.headers()).version  # type: ignore[arg-type]
        for r in records
        if r.key() == aggregate_id.encode()
    ]


def test_mixed_commands_succeed_or_fail_alone_and_nothing_is_half_written(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    with KafkaEventStore(
        settings, [Account, Fragile], partitions=PARTITIONS, topic_prefix=f"{unique_name}."
    ) as store:
        store.append(ACCOUNT, "a-1", [AccountOpened(owner="ann")], 0)
        store.append(ACCOUNT, "a-2", [AccountOpened(owner="bo")], 0)
        futures = store.append_many(
            [
                AppendCall(ACCOUNT, "a-1", [deposit("1")], 1),
                AppendCall(ACCOUNT, "a-2", [deposit("2"), deposit("3")], 5),  # stale
                AppendCall(ACCOUNT, "a-1", [deposit("3"), deposit("4")], 2),  # after the 1st
                AppendCall(ACCOUNT, "a-3", [AccountOpened(owner="cy")], 0),
                AppendCall(FRAGILE, "f-1", [Poked(), Poked(explode=True)], 0),  # @apply raises
                AppendCall("tests.unknown", "u-1", [Poked()], 0),  # not served
            ]
        )
        results = [futures[i].result(30) for i in (0, 2, 3)]
        assert [r.version for r in results] == [2, 4, 1]
        assert [len(r.positions) for r in results] == [1, 2, 1]
        conflict = futures[1].exception(30)
        assert isinstance(conflict, ConcurrencyError) and conflict.actual == 1
        assert isinstance(futures[4].exception(30), ApplyError)
        assert isinstance(futures[5].exception(30), ConfigurationError)
        assert store.load(Account, "a-1").balance == Decimal("8")
        assert (store.version(ACCOUNT, "a-2"), store.version(FRAGILE, "f-1")) == (1, 0)
        topic, fragile = store.topic_for(ACCOUNT), store.topic_for(FRAGILE)
        # An argument error in any command: nothing of the call starts.
        with pytest.raises(ValueError, match="at least one event"):
            store.append_many(
                [
                    AppendCall(ACCOUNT, "a-4", [AccountOpened(owner="di")], 0),
                    AppendCall(ACCOUNT, "a-5", [], 0),
                ]
            )
    assert versions_on_topic(settings, topic, "a-1") == [1, 2, 3, 4]
    assert versions_on_topic(settings, topic, "a-2") == [1]  # nothing of the stale command
    assert versions_on_topic(settings, topic, "a-4") == []
    assert versions_on_topic(settings, fragile, "f-1") == []
    # A closed store refuses each command in its own future.
    (closed,) = store.append_many([AppendCall(ACCOUNT, "a-6", [AccountOpened(owner="e")], 0)])
    assert isinstance(closed.exception(0), StoreUnavailableError)


def test_save_all_shares_group_commits_and_marks_only_the_written_aggregates_committed(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    with KafkaEventStore(
        settings, [Account], partitions=PARTITIONS, topic_prefix=f"{unique_name}."
    ) as store:
        accounts = Repository(store, Account)
        opened = [accounts.create(f"s-{n}") for n in range(20)]
        for account in opened:
            account.open(account.id)
        assert [r.version for r in accounts.save_all(opened)] == [1] * 20
        stale = accounts.get("s-0")
        opened[0].deposit(Decimal("5"))
        accounts.save(opened[0])
        for account in opened[1:]:
            account.deposit(Decimal("1"))
        stale.deposit(Decimal("2"))
        with pytest.raises(ConcurrencyError):
            accounts.save_all([*opened[1:10], stale, *opened[10:]])
        assert all(a.pending_events == () for a in opened)
        assert [accounts.get(a.id).version for a in opened[1:]] == [2] * 19
        assert len(stale.pending_events) == 1
        assert accounts.get("s-0").balance == Decimal("5")


def test_the_grouped_store_answers_each_command_of_append_many_alone(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    with solo_grouped_store(kafka_settings, unique_name, tmp_path) as store:
        store.append(FRAGILE, "f-1", [Poked()], 0)
        good, stale, bad, new = store.append_many(
            [
                AppendCall(FRAGILE, "f-1", [Poked()], 1),
                AppendCall(FRAGILE, "f-1", [Poked()], 1),  # lost to the one before
                AppendCall(FRAGILE, "f-2", [Poked(), Poked(explode=True)], 0),
                AppendCall(FRAGILE, "f-3", [Poked(), Poked()], 0),
            ]
        )
        assert (good.result(30).version, new.result(30).version) == (2, 2)
        assert isinstance(stale.exception(30), ConcurrencyError)
        assert isinstance(bad.exception(30), ApplyError)
        assert [store.version(FRAGILE, i) for i in ("f-1", "f-2", "f-3")] == [2, 0, 2]
