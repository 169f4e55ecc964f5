"""Snapshots on a real broker: a new owner restores them instead of replaying the events.

Each test runs one ``GroupedKafkaEventStore`` at a time (it owns every partition), each
with its own SQLite directory unless the test is about the local files.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
PARTITIONS = 2


class AccountV2(Account):
    """The same aggregate after a change of its state layout."""

    aggregate_type = "bank.account"
    snapshot_version = 2


def grouped(
    settings: KafkaSettings, prefix: str, directory: Path, cls: type[Account] = Account
) -> GroupedKafkaEventStore:
    store = GroupedKafkaEventStore(
        settings,
        [cls],
        directory=directory,
        member="solo",
        partitions=PARTITIONS,
        topic_prefix=prefix,
    ).start()
    assert store.wait_serving(60)
    assert len(store.owned) == PARTITIONS
    return store


def seed(store: GroupedKafkaEventStore | KafkaEventStore, accounts: int) -> None:
    for n in range(accounts):
        store.append(ACCOUNT, f"acc-{n}", [AccountOpened(owner=str(n))], 0)
        store.append(ACCOUNT, f"acc-{n}", [MoneyDeposited(amount=Decimal(n + 1))] * 2, 1)


def assert_seeded(store: GroupedKafkaEventStore, accounts: int, cls: type[Account]) -> None:
    for n in range(accounts):
        account = store.load(cls, f"acc-{n}")
        assert (account.version, account.balance, account.owner) == (
            3,
            Decimal(2 * (n + 1)),
            str(n),
        )


def rebuilds(topic: str, partition: int, reason: str) -> float:
    labels = {"topic": topic, "partition": str(partition), "reason": reason}
    return REGISTRY.get_sample_value("eventsource_snapshot_rebuilds_total", labels) or 0.0


@pytest.fixture
def settings(kafka_settings: KafkaSettings, unique_name: str) -> KafkaSettings:
    return kafka_settings.model_copy(update={"application_id": unique_name})


def test_a_new_owner_restores_every_aggregate_from_the_snapshot_topic_not_the_events(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    with grouped(settings, prefix, tmp_path / "first") as first:
        assert {w.restored_from for w in first.owned.values()} == {"new"}
        seed(first, 20)

    with grouped(settings, prefix, tmp_path / "second") as second:
        writers = second.owned.values()
        assert {w.restored_from for w in writers} == {"topic"}
        assert sum(w.restored_aggregates for w in writers) == 20
        assert_seeded(second, 20, Account)
        # It serves appends at the restored versions.
        assert second.append(ACCOUNT, "acc-3", [MoneyDeposited(amount=Decimal(1))], 3).version == 4
        with pytest.raises(Exception, match="is at version 4, expected 3"):
            second.append(ACCOUNT, "acc-3", [MoneyDeposited(amount=Decimal(1))], 3)


def test_an_owner_taking_a_partition_back_restores_its_local_file_and_catches_up(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    with grouped(settings, prefix, tmp_path / "a") as first:
        seed(first, 5)
    with grouped(settings, prefix, tmp_path / "b") as other:
        other.append(ACCOUNT, "acc-0", [MoneyDeposited(amount=Decimal(10))], 3)
    with grouped(settings, prefix, tmp_path / "a") as back:
        assert {w.restored_from for w in back.owned.values()} == {"local"}
        # acc-0 moved on while another member owned it: caught up from the events after
        # the local file's offset.
        assert back.load(Account, "acc-0").balance == Decimal(12)
        assert back.version(ACCOUNT, "acc-0") == 4


def test_a_snapshot_version_change_rebuilds_from_the_events_visibly_and_correctly(
    settings: KafkaSettings, unique_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"{unique_name}."
    topic = f"{prefix}{ACCOUNT}.events"
    with grouped(settings, prefix, tmp_path / "v1") as old:
        seed(old, 12)
    before = [rebuilds(topic, p, "version") for p in range(PARTITIONS)]

    logger = "eventsource.store.kafka.scaleout.snapshots_writer"
    with (
        caplog.at_level(logging.WARNING, logger=logger),
        grouped(settings, prefix, tmp_path / "v2", AccountV2) as new,
    ):
        assert {w.restored_from for w in new.owned.values()} == {"events"}
        assert all((w.rebuild_reason or "").startswith("version") for w in new.owned.values())
        assert_seeded(new, 12, AccountV2)
    assert [rebuilds(topic, p, "version") for p in range(PARTITIONS)] == [b + 1 for b in before]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == PARTITIONS
    assert all("cannot be used" in w and "snapshot version 2" in w for w in warnings)

    # The rebuild wrote fresh snapshots: the next owner restores them.
    with grouped(settings, prefix, tmp_path / "v2-next", AccountV2) as next_owner:
        assert {w.restored_from for w in next_owner.owned.values()} == {"topic"}
        assert_seeded(next_owner, 12, AccountV2)


def test_events_written_without_snapshots_are_rebuilt_from_the_topic_when_switching_mode(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    topic = f"{prefix}{ACCOUNT}.events"
    with KafkaEventStore(settings, [Account], partitions=PARTITIONS, topic_prefix=prefix) as plain:
        seed(plain, 8)
    before = sum(rebuilds(topic, p, "missing") for p in range(PARTITIONS))
    with grouped(settings, prefix, tmp_path / "g") as store:
        assert {w.restored_from for w in store.owned.values()} == {"events"}
        assert_seeded(store, 8, Account)
    assert sum(rebuilds(topic, p, "missing") for p in range(PARTITIONS)) == before + PARTITIONS


def test_a_local_file_of_another_snapshot_version_is_not_used(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    with grouped(settings, prefix, tmp_path / "same") as old:
        seed(old, 4)
    with grouped(settings, prefix, tmp_path / "same", AccountV2) as new:
        assert {w.restored_from for w in new.owned.values()} == {"events"}
        assert_seeded(new, 4, AccountV2)
