"""The broker stops under an asyncio service: typed errors, and the loop keeps serving.

Runs its own broker (never the shared one), stops it while tasks append through
``AsyncRepository``, and checks that (1) the event loop keeps running other coroutines
while appends wait for a broker that is gone, (2) every failed append ends with one of the
three outcomes' typed errors, and (3) appends succeed again once the broker is back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import pytest

from eventsource.aio import AsyncRepository
from eventsource.errors import (
    ConcurrencyError,
    FencedError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.launcher import LocalKafka
from eventsource.store.kafka import KafkaEventStore, WriterOptions
from examples.bank.domain import Account

pytestmark = pytest.mark.integration

TYPED = (ConcurrencyError, FencedError, StoreUnavailableError, UncertainCommitError)
HANG = 180.0
"""Seconds after which a phase that should end is reported as hung (not a performance bound)."""


class Depositor:
    """Deposits into one account in a loop, reloading after anything but success."""

    def __init__(self, accounts: AsyncRepository[Account], account_id: str) -> None:
        self.accounts = accounts
        self.account_id = account_id
        self.outcomes: Counter[str] = Counter()
        self.in_flight = False

    async def reload(self) -> Account:
        while True:  # a writer recovering from the outage refuses reads for a moment
            try:
                return await self.accounts.get(self.account_id)
            except StoreUnavailableError:
                await asyncio.sleep(0.1)

    async def run(self, stop: asyncio.Event) -> None:
        account = await self.reload()
        while not stop.is_set():
            account.deposit(Decimal(1))
            self.in_flight = True
            try:
                await self.accounts.save(account)
                self.outcomes["written"] += 1
            except TYPED as exc:
                self.outcomes[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                account = await self.reload()
            finally:
                self.in_flight = False


async def written_at_least(depositors: list[Depositor], count: int) -> None:
    while sum(d.outcomes["written"] for d in depositors) < count:
        await asyncio.sleep(0.05)


def test_appends_fail_typed_while_the_broker_is_stopped_and_the_loop_keeps_serving(
    broker: LocalKafka,
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        application_id="aio-broker-stop",
        delivery_timeout_ms=5_000,
        transaction_timeout_ms=15_000,
    )

    async def scenario(store: KafkaEventStore) -> list[Depositor]:
        accounts = AsyncRepository(store, Account)
        ids = [f"acc-{i}" for i in range(6)]
        account_list = []
        for account_id in ids:
            account = accounts.create(account_id)
            account.open(owner=account_id)
            account_list.append(account)
        await accounts.save_all(account_list)
        depositors = [Depositor(accounts, i) for i in ids]
        stop = asyncio.Event()
        running = [asyncio.create_task(d.run(stop)) for d in depositors]
        await asyncio.wait_for(written_at_least(depositors, 50), HANG)

        await asyncio.to_thread(broker.stop)
        # While appends wait on a broker that is gone, this coroutine keeps being
        # scheduled: count its turns taken while some save is in flight.
        turns_while_waiting = 0

        async def until_failures(count: int) -> None:
            nonlocal turns_while_waiting
            while sum(sum(d.outcomes.values()) - d.outcomes["written"] for d in depositors) < count:
                await asyncio.sleep(0.02)
                turns_while_waiting += any(d.in_flight for d in depositors)

        await asyncio.wait_for(until_failures(len(depositors)), HANG)
        assert turns_while_waiting > 0

        await asyncio.to_thread(broker.start, 120)
        written = sum(d.outcomes["written"] for d in depositors)
        await asyncio.wait_for(written_at_least(depositors, written + 50), HANG)
        stop.set()
        await asyncio.gather(*running)
        return depositors

    store = KafkaEventStore(
        settings, [Account], partitions=3, options=WriterOptions(append_timeout=20)
    ).start(120)
    try:
        depositors = asyncio.run(scenario(store))
    finally:
        store.close()
    failures = Counter[str]()
    for d in depositors:
        failures.update({k: v for k, v in d.outcomes.items() if k != "written"})
    assert failures, "no append failed while the broker was stopped"
    print(f"outcomes with the broker stopped and back: {failures}")
