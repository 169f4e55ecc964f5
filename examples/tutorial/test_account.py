"""Tutorial part 1: the Account's rules as given/when/then specifications.

Run from the repository root: .venv/bin/pytest examples/tutorial/test_account.py
"""

from decimal import Decimal

from eventsource.errors import DomainError
from eventsource.testing.given import AggregateSpec
from examples.bank.domain import (
    Account,
    AccountClosed,
    AccountOpened,
    InsufficientFunds,
    MoneyDeposited,
)


def test_a_deposit_increases_the_balance() -> None:
    (
        AggregateSpec(Account)
        .given(AccountOpened(owner="ann"))
        .when(lambda account: account.deposit(Decimal("5")))
        .then(MoneyDeposited(amount=Decimal("5")))
        .then_state(lambda account: account.balance == Decimal("5"))
    )


def test_a_withdrawal_larger_than_the_balance_is_refused() -> None:
    (
        AggregateSpec(Account)
        .given(AccountOpened(owner="ann"), MoneyDeposited(amount=Decimal("10")))
        .when(lambda account: account.withdraw(Decimal("25")))
        .then_raises(InsufficientFunds, match="cannot withdraw 25")
    )


def test_a_closed_account_takes_no_deposit() -> None:
    (
        AggregateSpec(Account)
        .given(AccountOpened(owner="ann"), AccountClosed(reason="moved"))
        .when(lambda account: account.deposit(Decimal("1")))
        .then_raises(DomainError, match="is not open")
    )
