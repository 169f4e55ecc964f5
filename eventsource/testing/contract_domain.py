"""The small domain the event-store contract suite appends and loads.

It ships inside the package (unlike ``examples/``), so an installed eventsource can run
:class:`~eventsource.testing.contract.EventStoreContract` against a user's own adapter.
A store under test must accept :class:`Account` (aggregate type ``eventsource.contract``).
"""

from __future__ import annotations

from decimal import Decimal

from eventsource.domain import Aggregate, Event, apply

__all__ = ["Account", "AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]


class AccountOpened(Event):
    __namespace__ = "eventsource.contract"
    owner: str


class MoneyDeposited(Event):
    __namespace__ = "eventsource.contract"
    amount: Decimal


class MoneyWithdrawn(Event):
    __namespace__ = "eventsource.contract"
    amount: Decimal


class Account(Aggregate):
    """A balance with an owner; commands do no rule checks beyond what the contract needs."""

    aggregate_type = "eventsource.contract"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.owner = ""
        self.balance = Decimal("0.00")

    def open(self, owner: str) -> None:
        self.emit(AccountOpened(owner=owner))

    def deposit(self, amount: Decimal) -> None:
        self.emit(MoneyDeposited(amount=amount))

    def withdraw(self, amount: Decimal) -> None:
        self.emit(MoneyWithdrawn(amount=amount))

    @apply
    def _opened(self, event: AccountOpened) -> None:
        self.owner = event.owner

    @apply
    def _deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount

    @apply
    def _withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount
