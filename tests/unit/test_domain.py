"""The domain layer: events are immutable and named stably; aggregates fold events."""

from __future__ import annotations

import gc
from decimal import Decimal

import pytest
from pydantic import ValidationError

from eventsource.domain import Aggregate, Event, apply
from eventsource.errors import DomainError, MissingHandlerError
from eventsource.store.kafka.index import scratch_copy
from examples.bank.domain import Account, AccountOpened, InsufficientFunds, MoneyDeposited


def test_event_type_is_namespace_and_name() -> None:
    assert MoneyDeposited.event_type() == "bank.account.MoneyDeposited"


def test_events_are_immutable_and_reject_unknown_fields() -> None:
    event = MoneyDeposited(amount=Decimal("1.00"))
    with pytest.raises(ValidationError):
        event.amount = Decimal("2.00")  # type: ignore[misc]
    with pytest.raises(ValidationError):
        MoneyDeposited(amount=Decimal("1.00"), extra=1)  # type: ignore[call-arg]


def test_invalid_event_name_is_rejected_at_class_creation() -> None:
    with pytest.raises(DomainError, match="not a valid Avro name"):

        class Bad(Event):
            __event_name__ = "has space"


def test_emit_applies_and_queues_events_and_counts_versions() -> None:
    account = Account("acc-1")
    account.open("ann")
    account.deposit(Decimal("10.00"))
    assert account.balance == Decimal("10.00")
    assert account.version == 2
    assert account.committed_version == 0
    assert [type(e) for e in account.pending_events] == [AccountOpened, MoneyDeposited]
    account.mark_committed()
    assert account.pending_events == ()
    assert account.committed_version == 2


def test_mark_committed_returns_the_pending_events_and_emitting_again_starts_afresh() -> None:
    account = Account("acc-1")
    assert account.mark_committed() == []  # nothing pending
    account.open("ann")
    emitted = account.mark_committed()
    assert [type(e) for e in emitted] == [AccountOpened]
    account.deposit(Decimal("1.00"))
    account.deposit(Decimal("2.00"))
    assert emitted == [AccountOpened(owner="ann")]  # the returned list is not reused
    assert (len(account.pending_events), account.committed_version) == (2, 1)


def test_a_plain_aggregate_with_nothing_pending_has_a_dict_the_collector_ignores() -> None:
    # The store keeps a folded copy of every aggregate and makes a new one per append: an
    # untracked __dict__ keeps those out of the cyclic collector's generations.
    account = Account.rehydrate("acc-1", [AccountOpened(owner="ann")])  # as the store folds
    assert not gc.is_tracked(vars(account))
    assert not gc.is_tracked(vars(scratch_copy(account)))  # the writer's copy per append
    account.deposit(Decimal("1.00"))  # pending events: a list, tracked as it must be
    assert gc.is_tracked(vars(account))


def test_rehydrate_folds_history_without_pending_events() -> None:
    account = Account.rehydrate(
        "acc-1", [AccountOpened(owner="ann"), MoneyDeposited(amount=Decimal("3.50"))]
    )
    assert (account.balance, account.version, account.pending_events) == (Decimal("3.50"), 2, ())


def test_command_rule_violation_emits_nothing() -> None:
    account = Account.rehydrate("acc-1", [AccountOpened(owner="ann")])
    with pytest.raises(InsufficientFunds, match="cannot withdraw 5"):
        account.withdraw(Decimal("5"))
    assert account.pending_events == ()
    assert account.version == 1


def test_event_without_handler_gives_a_clear_error() -> None:
    class Stray(Event):
        __namespace__ = "tests"

    account = Account("acc-9")
    with pytest.raises(MissingHandlerError, match=r"no @apply handler for Stray.*acc-9"):
        account.emit(Stray())


def test_apply_handler_must_annotate_its_event() -> None:
    with pytest.raises(DomainError, match="must take"):

        class Broken(Aggregate):
            @apply
            def _x(self, event) -> None:  # type: ignore[no-untyped-def]
                pass


def test_aggregate_type_defaults_to_snake_case_and_is_validated() -> None:
    class ShoppingCart(Aggregate):
        pass

    assert ShoppingCart.aggregate_type == "shopping_cart"
    with pytest.raises(DomainError, match="lowercase dotted"):

        class Weird(Aggregate):
            aggregate_type = "Bad Name"


def test_handlers_are_inherited() -> None:
    class PremiumAccount(Account):
        aggregate_type = "bank.premium_account"

    assert set(PremiumAccount.event_types()) == set(Account.event_types())


def test_empty_aggregate_id_is_rejected() -> None:
    with pytest.raises(DomainError, match="non-empty aggregate id"):
        Account("")
