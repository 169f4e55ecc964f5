"""``eventsource.aio`` on the real broker: races, cancellation, an event loop never blocked."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest

from eventsource.aio import AsyncRepository
from eventsource.errors import ConcurrencyError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.routing import AppendServer, PartitionScanLoader, RemoteEventStore
from examples.bank.domain import Account

pytestmark = pytest.mark.integration


def make_store(settings: KafkaSettings, name: str) -> KafkaEventStore:
    settings = settings.model_copy(update={"application_id": name})
    return KafkaEventStore(settings, [Account], partitions=3, topic_prefix=f"{name}.")


def opened(accounts: AsyncRepository[Account], account_id: str) -> Account:
    account = accounts.create(account_id)
    account.open(owner=account_id)
    return account


async def race_once(accounts: AsyncRepository[Account], account_id: str, racers: int) -> int:
    """``racers`` tasks deposit at one version; returns the winner's amount in cents."""
    copies = [await accounts.get(account_id) for _ in range(racers)]
    for n, copy in enumerate(copies):
        copy.deposit(Decimal(n + 1))
    outcomes = await asyncio.gather(*(accounts.save(c) for c in copies), return_exceptions=True)
    winners = [n for n, o in enumerate(outcomes) if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1, f"{account_id}: {len(winners)} winners: {outcomes}"
    assert all(isinstance(e, ConcurrencyError) for e in losers), losers
    assert all(copies[n].pending_events for n in range(racers) if n not in winners)
    return winners[0] + 1


def test_concurrent_tasks_on_the_same_and_different_aggregates_lose_nothing(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    ids = [f"acc-{i}" for i in range(20)]
    rounds, racers = 5, 6

    async def scenario(store: KafkaEventStore) -> dict[str, Decimal]:
        accounts = AsyncRepository(store, Account)
        results = await accounts.save_all([opened(accounts, i) for i in ids])
        assert [r.version for r in results] == [1] * len(ids)
        expected = dict.fromkeys(ids, Decimal(0))
        for _ in range(rounds):  # every account races at once, each with `racers` tasks
            won = await asyncio.gather(*(race_once(accounts, i, racers) for i in ids))
            for account_id, amount in zip(ids, won, strict=True):
                expected[account_id] += amount
        return expected

    with make_store(kafka_settings, unique_name) as store:
        expected = asyncio.run(scenario(store))

    # A new store catches up from the topic (checking versions are contiguous): every
    # winner's event is there once, no loser's is.
    with make_store(kafka_settings, unique_name) as again:
        for account_id, balance in expected.items():
            account = again.load(Account, account_id)
            assert (account.version, account.balance) == (1 + rounds, balance), account_id


def test_a_cancelled_save_is_neither_cancelled_nor_duplicated_and_its_outcome_shows(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    ids = [f"acc-{i}" for i in range(40)]

    async def scenario(store: KafkaEventStore) -> None:
        accounts = AsyncRepository(store, Account)
        await accounts.save_all([opened(accounts, i) for i in ids])
        loaded = [await accounts.get(i) for i in ids]
        tasks = []
        rng = random.Random(7)
        for account in loaded:
            account.deposit(Decimal(3))
            tasks.append(asyncio.create_task(accounts.save(account)))
        for task in tasks:  # cancel each after a random number of loop turns
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = [o for o in outcomes if isinstance(o, asyncio.CancelledError)]
        assert cancelled, "no save was cancelled while in flight: the test proves nothing"
        # The caller learns the outcome afterwards from the store: every append commits.
        for account_id in ids:
            while await accounts.version(account_id) < 2:
                await asyncio.sleep(0.01)
        # One more save at the committed version succeeds: nothing extra was written.
        for account_id in ids:
            account = await accounts.get(account_id)
            assert (account.version, account.balance) == (2, Decimal(3)), account_id
            account.deposit(Decimal(1))
            assert (await accounts.save(account)).version == 3

    with make_store(kafka_settings, unique_name) as store:
        asyncio.run(scenario(store))
    with make_store(kafka_settings, unique_name) as again:
        for account_id in ids:
            account = again.load(Account, account_id)
            assert (account.version, account.balance) == (3, Decimal(4)), account_id


def test_a_non_owner_appends_through_the_owner_and_loads_by_scan_off_the_loop(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    ids = [f"acc-{i}" for i in range(5)]

    async def scanned(accounts: AsyncRepository[Account], account_id: str) -> Account:
        """The scan once it shows the owner's version (the scan reads up to the last
        stable offset, which moves a little after a commit returns)."""
        version = await accounts.version(account_id)  # asked of the owner
        while (account := await accounts.get_or_none(account_id)) is None or (
            account.version < version
        ):
            await asyncio.sleep(0.05)
        return account

    async def scenario(remote: RemoteEventStore, loader: PartitionScanLoader) -> None:
        # The remote store only appends; the loader folds aggregates from their partitions.
        accounts = AsyncRepository(remote, Account, loader=loader)
        await accounts.save_all([opened(accounts, i) for i in ids])
        copies = [await scanned(accounts, i) for i in ids for _ in range(4)]
        for copy in copies:
            copy.deposit(Decimal(2))
        outcomes = await asyncio.gather(*(accounts.save(c) for c in copies), return_exceptions=True)
        won = [
            c.id for c, o in zip(copies, outcomes, strict=True) if not isinstance(o, BaseException)
        ]
        assert sorted(won) == ids, outcomes  # one winner per aggregate
        assert all(
            isinstance(o, ConcurrencyError) for o in outcomes if isinstance(o, BaseException)
        )
        for account_id in ids:
            account = await scanned(accounts, account_id)
            assert (account.version, account.balance) == (2, Decimal(2))

    with (
        make_store(kafka_settings, unique_name) as owner,
        AppendServer(owner, settings, owner.codec),
        RemoteEventStore(settings, owner.codec, timeout=30) as remote,
    ):
        loader = PartitionScanLoader(settings, owner.codec, topic_prefix=f"{unique_name}.")
        asyncio.run(scenario(remote, loader))
