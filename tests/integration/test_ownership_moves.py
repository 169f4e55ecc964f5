"""Ownership moving between writer processes (here: two stores in one process) on a broker."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from eventsource.errors import NotOwnerError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from eventsource.store.kafka.scaleout.group_store_route import GroupRouter, serve_routing
from eventsource.store.partitioner import partition_for_id
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
PARTITIONS = 4
IDS = [f"acc-{n}" for n in range(16)]


def member(settings: KafkaSettings, prefix: str, name: str, root: Path) -> GroupedKafkaEventStore:
    return GroupedKafkaEventStore(
        settings,
        [Account],
        directory=root / name,
        member=name,
        partitions=PARTITIONS,
        topic_prefix=prefix,
    ).start()


def settle(*stores: GroupedKafkaEventStore, timeout: float = 60) -> None:
    """Until the stores own every partition between them, each once, each some, all serving."""
    # The assignment must also hold still for a moment: cooperative rebalancing can take more
    # than one round, and on a loaded machine a round may follow a seemingly settled state.
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    previous: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        owned = [p for s in stores for p in s.owned]
        settled = (
            len(owned) == len(set(owned)) == PARTITIONS
            and all(s.owned for s in stores)
            and all(s.wait_serving(10) for s in stores)
        )
        if settled and sorted(owned) == previous and stable_since is not None:
            if time.monotonic() - stable_since >= 2.0:
                return
        elif settled:
            stable_since, previous = time.monotonic(), sorted(owned)
        else:
            stable_since = None
        time.sleep(0.1)
    raise AssertionError(f"no settled assignment: {[sorted(s.owned) for s in stores]}")


def owner_of(aggregate_id: str, *stores: GroupedKafkaEventStore) -> GroupedKafkaEventStore:
    partition = partition_for_id(aggregate_id, PARTITIONS)
    return next(s for s in stores if any(p == partition for _, p in s.owned))


@pytest.fixture
def settings(kafka_settings: KafkaSettings, unique_name: str) -> KafkaSettings:
    return kafka_settings.model_copy(update={"application_id": unique_name})


def test_a_non_owner_fails_fast_with_not_owner_naming_the_owner_and_the_router_reaches_it(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    with (
        member(settings, prefix, "w-a", tmp_path) as a,
        member(settings, prefix, "w-b", tmp_path) as b,
    ):
        settle(a, b)
        assert a.owned and b.owned
        with serve_routing(a), serve_routing(b):
            router = GroupRouter(settings, a.codec, partitions=PARTITIONS, topic_prefix=prefix)
            with router:
                for aggregate_id in IDS:
                    result = router.append(ACCOUNT, aggregate_id, [AccountOpened(owner="x")], 0)
                    assert result.version == 1
                    assert (
                        router.owner_of(ACCOUNT, aggregate_id)
                        == owner_of(aggregate_id, a, b).member
                    )
                assert router.version(ACCOUNT, IDS[0]) == 1
        for aggregate_id in IDS:
            owner = owner_of(aggregate_id, a, b)
            other = b if owner is a else a
            assert owner.load(Account, aggregate_id).version == 1
            with pytest.raises(NotOwnerError, match=f"it is owned by {owner.member} "):
                other.append(ACCOUNT, aggregate_id, [MoneyDeposited(amount=Decimal(1))], 1)
            with pytest.raises(NotOwnerError):
                other.load(Account, aggregate_id)
            with pytest.raises(NotOwnerError):
                other.version(ACCOUNT, aggregate_id)


def test_partitions_move_to_a_joining_member_and_back_when_it_leaves_with_state_intact(
    settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}."
    with member(settings, prefix, "w-a", tmp_path) as a:
        settle(a)
        for n, aggregate_id in enumerate(IDS):
            a.append(ACCOUNT, aggregate_id, [AccountOpened(owner="x")], 0)
            a.append(ACCOUNT, aggregate_id, [MoneyDeposited(amount=Decimal(n + 1))], 1)

        with member(settings, prefix, "w-b", tmp_path) as b:
            settle(a, b)
            assert a.owned and b.owned  # cooperative-sticky moved some, not all
            moved = [i for i in IDS if owner_of(i, a, b) is b]
            assert moved
            assert {w.restored_from for w in b.owned.values()} == {"topic"}
            for aggregate_id in moved:
                n = IDS.index(aggregate_id)
                assert b.load(Account, aggregate_id).balance == Decimal(n + 1)
                b.append(ACCOUNT, aggregate_id, [MoneyDeposited(amount=Decimal(100))], 2)
                with pytest.raises(NotOwnerError):
                    a.version(ACCOUNT, aggregate_id)

        settle(a)  # b left the group: its partitions come back to a
        for aggregate_id in moved:
            n = IDS.index(aggregate_id)
            account = a.load(Account, aggregate_id)
            assert (account.version, account.balance) == (3, Decimal(n + 101))
