"""Read models of the bank demo: ``AccountBalances`` (one row per account).

Balances are stored in integer cents: exact on every database (SQLite has no decimal
type; SQLAlchemy would go through floating point there).
"""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, Column, Integer, String

from eventsource.projection import Context, Projection, on, table
from eventsource.testing.seed import SeedEvent
from examples.bank.domain import (
    Account,
    AccountClosed,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
)

__all__ = ["AccountBalances", "AccountBalancesPerEvent", "cents", "sample_history"]


#: the upsert's key, summed and coalesced columns (see ``AccountBalances._write``)
_KEY = ("account_id",)
_INCREMENT = ("balance_cents", "events")
_COALESCE = ("owner",)


def cents(amount: Decimal) -> int:
    """Decimal money with two places -> integer cents."""
    return int(amount * 100)


class AccountBalances(Projection):
    """Balance, owner and event count per account, through the batched write path.

    Every handler issues the same upsert shape, so a whole consume batch of events becomes
    one ``executemany``: ``balance_cents`` and ``events`` add up, ``owner`` keeps its
    stored value unless the event sets it, ``version`` is the aggregate version last seen.
    """

    name = "balances"
    version = 1
    aggregates = (Account,)

    accounts = table(
        "accounts",
        Column("account_id", String(64), primary_key=True),
        Column("owner", String(200)),
        Column("balance_cents", BigInteger, nullable=False),
        Column("events", Integer, nullable=False),
        Column("version", Integer, nullable=False),
        Column("closed", Boolean, nullable=False),
    )

    #: False runs each statement at once (``ctx.execute``): the simple per-event path.
    batched = True

    def _write(
        self, ctx: Context, delta_cents: int, owner: str | None = None, closed: bool = False
    ) -> None:
        meta = ctx.meta
        ctx.upsert(
            self.accounts,
            {
                "account_id": meta.aggregate_id,
                "owner": owner,
                "balance_cents": delta_cents,
                "events": 1,
                "version": meta.version,
                "closed": closed,
            },
            # tuple constants: the context recognises a repeated upsert by identity
            key=_KEY,
            increment=_INCREMENT,
            coalesce=_COALESCE,
            immediate=not self.batched,
        )

    @on(AccountOpened)
    def _opened(self, event: AccountOpened, ctx: Context) -> None:
        self._write(ctx, 0, owner=event.owner)

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        self._write(ctx, cents(event.amount))

    @on(MoneyWithdrawn)
    def _withdrawn(self, event: MoneyWithdrawn, ctx: Context) -> None:
        self._write(ctx, -cents(event.amount))

    @on(AccountClosed)
    def _closed(self, event: AccountClosed, ctx: Context) -> None:
        self._write(ctx, 0, closed=True)


class AccountBalancesPerEvent(AccountBalances):
    """The same read model, one statement executed per event (for comparisons)."""

    batched = False


def sample_history(accounts: int, events: int, seed: int = 0) -> list[SeedEvent]:
    """A valid random history: opens, deposits, withdrawals (never overdrawn), closes.

    ``accounts`` ids ``acc-00000``...; each account is opened by its first event.
    """
    rng = random.Random(seed)
    ids = [f"acc-{i:05d}" for i in range(accounts)]
    balance: dict[str, int] = {}
    closed: set[str] = set()
    history: list[SeedEvent] = []
    while len(history) < events:
        account_id = rng.choice(ids)
        if account_id in closed:
            continue
        if account_id not in balance:
            balance[account_id] = 0
            history.append(SeedEvent(account_id, AccountOpened(owner=f"owner {account_id}")))
            continue
        roll = rng.random()
        amount = rng.randint(1, 100_000)
        if roll < 0.002 and len(closed) < accounts // 10:
            closed.add(account_id)
            history.append(SeedEvent(account_id, AccountClosed(reason="customer request")))
        elif roll < 0.35 and balance[account_id] >= amount:
            balance[account_id] -= amount
            history.append(SeedEvent(account_id, MoneyWithdrawn(amount=Decimal(amount) / 100)))
        else:
            balance[account_id] += amount
            history.append(SeedEvent(account_id, MoneyDeposited(amount=Decimal(amount) / 100)))
    return history
