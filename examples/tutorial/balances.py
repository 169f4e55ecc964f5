"""Tutorial part 2: the Balances projection (imported by the part's programs)."""

from sqlalchemy import BigInteger, Column, Integer, String

from eventsource.projection import Context, Projection, on, table
from examples.bank.domain import (
    Account,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
)


class Balances(Projection):
    name = "tutorial_balances"
    version = 1
    aggregates = (Account,)

    accounts = table(
        "accounts",
        Column("account_id", String(64), primary_key=True),
        Column("owner", String(200)),
        Column("balance_cents", BigInteger, nullable=False),
        Column("events", Integer, nullable=False),
    )

    def _add(self, ctx: Context, cents: int, owner: str | None = None) -> None:
        ctx.upsert(
            self.accounts,
            {
                "account_id": ctx.meta.aggregate_id,
                "owner": owner,
                "balance_cents": cents,
                "events": 1,
            },
            key=["account_id"],
            increment=["balance_cents", "events"],  # added to the stored value
            coalesce=["owner"],  # None keeps the stored owner
        )

    @on(AccountOpened)
    def _opened(self, event: AccountOpened, ctx: Context) -> None:
        self._add(ctx, 0, owner=event.owner)

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        self._add(ctx, int(event.amount * 100))

    @on(MoneyWithdrawn)
    def _withdrawn(self, event: MoneyWithdrawn, ctx: Context) -> None:
        self._add(ctx, -int(event.amount * 100))
