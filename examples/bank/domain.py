"""An ``Account`` aggregate and its events."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from eventsource.domain import Aggregate, Event, apply
from eventsource.errors import DomainError

Money = Decimal


class AccountOpened(Event):
    __namespace__ = "bank.account"
    owner: str
    currency: str = "EUR"


class MoneyDeposited(Event):
    __namespace__ = "bank.account"
    amount: Decimal = Field(max_digits=18, decimal_places=2, gt=0)


class MoneyWithdrawn(Event):
    __namespace__ = "bank.account"
    amount: Decimal = Field(max_digits=18, decimal_places=2, gt=0)


class AccountClosed(Event):
    __namespace__ = "bank.account"
    reason: str = ""


class InsufficientFunds(DomainError):
    """A withdrawal larger than the balance."""


class Account(Aggregate):
    aggregate_type = "bank.account"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.owner = ""
        self.balance = Decimal("0.00")
        self.closed = False

    # commands -----------------------------------------------------------------------
    def open(self, owner: str, currency: str = "EUR") -> None:
        if self.version:
            raise DomainError(f"account {self.id!r} is already open")
        self.emit(AccountOpened(owner=owner, currency=currency))

    def deposit(self, amount: Decimal) -> None:
        self._require_open()
        self.emit(MoneyDeposited(amount=amount))

    def withdraw(self, amount: Decimal) -> None:
        self._require_open()
        if amount > self.balance:
            raise InsufficientFunds(
                f"account {self.id!r} holds {self.balance}, cannot withdraw {amount}"
            )
        self.emit(MoneyWithdrawn(amount=amount))

    def close(self, reason: str = "") -> None:
        self._require_open()
        self.emit(AccountClosed(reason=reason))

    def _require_open(self) -> None:
        if not self.version or self.closed:
            raise DomainError(f"account {self.id!r} is not open")

    # state changes ------------------------------------------------------------------
    @apply
    def _opened(self, event: AccountOpened) -> None:
        self.owner = event.owner

    @apply
    def _deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount

    @apply
    def _withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount

    @apply
    def _closed(self, event: AccountClosed) -> None:
        self.closed = True
