"""AggregateSpec: given history, when a command, then events / an error / a state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventsource.domain import Event
from eventsource.errors import DomainError, MissingHandlerError
from eventsource.testing.given import AggregateSpec
from examples.bank.domain import (
    Account,
    AccountClosed,
    AccountOpened,
    InsufficientFunds,
    MoneyDeposited,
    MoneyWithdrawn,
)

OPENED = AccountOpened(owner="ann")


class ForeignEvent(Event):
    """An event the Account has no @apply handler for."""

    __namespace__ = "tests.given"


def test_then_passes_when_the_command_emits_exactly_the_expected_events() -> None:
    AggregateSpec(Account).given(OPENED).when(lambda a: a.deposit(Decimal("5"))).then(
        MoneyDeposited(amount=Decimal("5"))
    )


def test_then_compares_decimal_amounts_by_value() -> None:
    AggregateSpec(Account).given(OPENED).when(lambda a: a.deposit(Decimal("5"))).then(
        MoneyDeposited(amount=Decimal("5.00"))
    )


def test_a_new_aggregate_needs_no_given() -> None:
    AggregateSpec(Account, "acc-9").when(lambda a: a.open("bob", "USD")).then(
        AccountOpened(owner="bob", currency="USD")
    )


def test_given_accumulates_history_in_order() -> None:
    spec = AggregateSpec(Account).given(OPENED).given(MoneyDeposited(amount=Decimal("7")))
    assert spec.history == (OPENED, MoneyDeposited(amount=Decimal("7")))
    spec.then_state(lambda a: a.balance == Decimal("7") and a.version == 2)


def test_a_partial_spec_can_be_shared_because_given_and_when_return_new_specs() -> None:
    opened = AggregateSpec(Account).given(OPENED)
    opened.when(lambda a: a.deposit(Decimal("1"))).then(MoneyDeposited(amount=Decimal("1")))
    opened.when(lambda a: a.close("done")).then(AccountClosed(reason="done"))
    assert opened.history == (OPENED,)


def test_then_fails_showing_expected_and_actual_events_and_the_first_difference() -> None:
    spec = AggregateSpec(Account).given(OPENED).when(lambda a: a.deposit(Decimal("4")))
    with pytest.raises(AssertionError) as failure:
        spec.then(MoneyDeposited(amount=Decimal("5")))
    assert str(failure.value) == (
        "the command emitted other events than expected\n"
        "  expected:\n"
        "    1. MoneyDeposited(amount=Decimal('5'))\n"
        "  actual:\n"
        "    1. MoneyDeposited(amount=Decimal('4'))\n"
        "  first difference at #1: amount: expected Decimal('5'), actual Decimal('4')"
    )


def test_then_fails_naming_both_types_when_the_event_type_differs() -> None:
    spec = AggregateSpec(Account).given(OPENED).when(lambda a: a.close())
    with pytest.raises(AssertionError, match="expected a MoneyWithdrawn, got a AccountClosed"):
        spec.then(MoneyWithdrawn(amount=Decimal("1")))


def test_then_fails_counting_events_when_the_command_emits_more_than_expected() -> None:
    def deposit_twice(account: Account) -> None:
        account.deposit(Decimal("1"))
        account.deposit(Decimal("2"))

    spec = AggregateSpec(Account).given(OPENED).when(deposit_twice)
    with pytest.raises(AssertionError) as failure:
        spec.then(MoneyDeposited(amount=Decimal("1")))
    message = str(failure.value)
    assert "2. MoneyDeposited(amount=Decimal('2'))" in message
    assert message.endswith("expected 1 event(s), the command emitted 2")


def test_then_fails_showing_the_error_when_the_command_raised() -> None:
    spec = AggregateSpec(Account).when(lambda a: a.deposit(Decimal("1")))
    with pytest.raises(AssertionError) as failure:
        spec.then(MoneyDeposited(amount=Decimal("1")))
    assert str(failure.value) == (
        "expected the command to emit [MoneyDeposited(amount=Decimal('1'))], "
        "but it raised DomainError: account 'spec-1' is not open"
    )
    assert isinstance(failure.value.__cause__, DomainError)


def test_then_nothing_passes_for_a_command_that_emits_nothing() -> None:
    AggregateSpec(Account).given(OPENED).when(lambda a: a.balance).then_nothing()


def test_then_nothing_fails_listing_the_emitted_events() -> None:
    spec = AggregateSpec(Account).given(OPENED).when(lambda a: a.close())
    with pytest.raises(AssertionError, match=r"actual:\n    1. AccountClosed\(reason=''\)"):
        spec.then_nothing()


def test_then_raises_passes_for_the_expected_error_and_matching_message() -> None:
    AggregateSpec(Account).given(OPENED).when(lambda a: a.withdraw(Decimal("5"))).then_raises(
        InsufficientFunds, match=r"holds 0\.00, cannot withdraw 5"
    )


def test_then_raises_accepts_a_base_class_of_the_error() -> None:
    AggregateSpec(Account).given(OPENED).when(lambda a: a.withdraw(Decimal("5"))).then_raises(
        DomainError
    )


def test_then_raises_fails_when_the_command_succeeds_and_shows_its_events() -> None:
    spec = AggregateSpec(Account).given(OPENED).when(lambda a: a.deposit(Decimal("5")))
    with pytest.raises(AssertionError) as failure:
        spec.then_raises(InsufficientFunds)
    assert str(failure.value) == (
        "expected the command to raise InsufficientFunds, but it succeeded and emitted "
        "[MoneyDeposited(amount=Decimal('5'))]"
    )


def test_then_raises_fails_when_another_error_type_is_raised() -> None:
    spec = AggregateSpec(Account).when(lambda a: a.withdraw(Decimal("5")))
    with pytest.raises(AssertionError) as failure:
        spec.then_raises(InsufficientFunds)
    assert str(failure.value) == (
        "expected the command to raise InsufficientFunds, "
        "but it raised DomainError: account 'spec-1' is not open"
    )


def test_then_raises_fails_when_the_message_does_not_match() -> None:
    spec = AggregateSpec(Account).given(OPENED).when(lambda a: a.withdraw(Decimal("5")))
    with pytest.raises(AssertionError, match="does not match 'overdrawn'"):
        spec.then_raises(InsufficientFunds, match="overdrawn")


def test_then_state_sees_the_events_of_the_command_applied() -> None:
    AggregateSpec(Account).given(OPENED, MoneyDeposited(amount=Decimal("10"))).when(
        lambda a: a.withdraw(Decimal("3"))
    ).then(MoneyWithdrawn(amount=Decimal("3"))).then_state(lambda a: a.balance == Decimal("7"))


def test_then_state_accepts_a_check_that_asserts_itself() -> None:
    def is_closed(account: Account) -> None:
        assert account.closed

    AggregateSpec(Account).given(OPENED).when(lambda a: a.close()).then_state(is_closed)


def test_then_state_fails_showing_the_public_state_and_the_description() -> None:
    spec = AggregateSpec(Account, "acc-1").given(OPENED)
    with pytest.raises(AssertionError) as failure:
        spec.then_state(lambda a: a.balance == Decimal("1"), "balance is 1")
    assert str(failure.value) == (
        "state check (balance is 1) failed; the aggregate is Account(id='acc-1', version=1, "
        "owner='ann', balance=Decimal('0.00'), closed=False)"
    )


def test_then_state_fails_when_the_command_raised() -> None:
    spec = AggregateSpec(Account).when(lambda a: a.close())
    with pytest.raises(AssertionError, match="but the command raised DomainError"):
        spec.then_state(lambda a: True)


def test_the_command_runs_once_however_many_assertions_follow() -> None:
    calls: list[int] = []

    def deposit(account: Account) -> None:
        calls.append(1)
        account.deposit(Decimal("2"))

    spec = AggregateSpec(Account).given(OPENED).when(deposit)
    spec.then(MoneyDeposited(amount=Decimal("2"))).then_state(lambda a: a.version == 2)
    assert spec.emitted == (MoneyDeposited(amount=Decimal("2")),)
    assert calls == [1]


def test_given_rejects_things_that_are_not_events() -> None:
    with pytest.raises(TypeError, match="given\\(\\) takes Event instances"):
        AggregateSpec(Account).given(AccountOpened)  # type: ignore[arg-type]


def test_when_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError, match="when\\(\\) takes a callable"):
        AggregateSpec(Account).when("deposit")  # type: ignore[arg-type]


def test_a_history_event_without_handler_surfaces_as_the_domain_error() -> None:
    with pytest.raises(MissingHandlerError):
        AggregateSpec(Account).given(ForeignEvent()).then_state(lambda a: True)


def test_then_rejects_event_classes_instead_of_events() -> None:
    spec = AggregateSpec(Account).given(OPENED).when(lambda a: a.deposit(Decimal("1")))
    with pytest.raises(TypeError, match=r"then\(\) takes Event instances, got <class"):
        spec.then(MoneyDeposited)  # type: ignore[arg-type]


def test_then_raises_rejects_something_that_is_not_an_exception_class() -> None:
    spec = AggregateSpec(Account).when(lambda a: a.close())
    with pytest.raises(TypeError, match="takes an exception class, got 'DomainError'"):
        spec.then_raises("DomainError")  # type: ignore[arg-type]
