"""Declaring projections: names, versions, topics, tables and handlers."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, String, Table

from eventsource.errors import ConfigurationError, InvalidIdentifierError
from eventsource.projection import Context, DeadLetterPolicy, Projection, on, table
from eventsource.projection.definition import TableSpec, validate_identifier
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, AccountBalancesPerEvent


class Counts(Projection):
    name = "counts"
    aggregates = (Account,)
    totals = table("totals", Column("id", String(64), primary_key=True), Column("n", Integer))

    @on(AccountOpened)
    def _opened(self, event: AccountOpened, ctx: Context) -> None:
        pass


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Balances",
        "1balances",
        "bal-ances",
        "bal ances",
        "x" * 42,
        "'); DROP TABLE x;--",
        'a"b',
        "é",
        None,
        7,
    ],
)
def test_invalid_identifiers_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidIdentifierError, match="not allowed"):
        validate_identifier(bad, "projection name")


@pytest.mark.parametrize("good", ["a", "balances", "read_model_2", "x" * 41])
def test_valid_identifiers_pass_unchanged(good: str) -> None:
    assert validate_identifier(good, "table name") == good


def test_a_hostile_projection_name_is_rejected_at_instantiation() -> None:
    with pytest.raises(InvalidIdentifierError):
        Counts(name="counts; DROP TABLE eventsource_checkpoints")


def test_a_hostile_table_name_is_rejected_at_declaration() -> None:
    with pytest.raises(InvalidIdentifierError):
        table('accounts"; drop table x; --', Column("id", Integer, primary_key=True))


def test_a_projection_class_without_a_name_cannot_be_instantiated() -> None:
    class Nameless(Projection):
        aggregates = (Account,)

    with pytest.raises(InvalidIdentifierError):
        Nameless()


def test_physical_tables_carry_projection_name_and_version() -> None:
    v1, v2 = Counts(), Counts(version=2)
    assert v1.tables["totals"].name == "counts_v1_totals"
    assert v2.tables["totals"].name == "counts_v2_totals"
    assert v1.view_name("totals") == "counts_totals"
    assert isinstance(v1.totals, Table) and v1.totals is v1.tables["totals"]
    assert isinstance(Counts.totals, TableSpec)


def test_bound_tables_are_plain_instance_attributes_unless_a_subclass_overrides_them() -> None:
    class Renamed(Counts):
        totals = "not a table"  # type: ignore[assignment]

    counts = Counts()
    assert vars(counts)["totals"] is counts.tables["totals"]  # no descriptor call per read
    renamed = Renamed()
    assert renamed.totals == "not a table" and "totals" not in vars(renamed)
    assert renamed.tables["totals"].name == "counts_v1_totals"


def test_versions_are_independent_copies_of_the_declared_columns() -> None:
    v1, v2 = Counts(), Counts(version=2)
    assert v1.totals is not v2.totals
    assert [c.name for c in v1.totals.columns] == [c.name for c in v2.totals.columns] == ["id", "n"]
    assert v1.metadata is not v2.metadata


@pytest.mark.parametrize("version", [0, -1, True, "2"])
def test_versions_must_be_positive_integers(version: object) -> None:
    with pytest.raises(ConfigurationError, match="version"):
        Counts(version=version)  # type: ignore[arg-type]


def test_a_too_long_physical_table_name_is_rejected() -> None:
    with pytest.raises(InvalidIdentifierError, match="limit is 63"):
        Counts(name="p" * 41, version=123456789012345678).physical_name("totals")


def test_topics_come_from_aggregates_unless_overridden() -> None:
    assert Counts().topics == ("bank.account.events",)
    assert Counts(topics=["a", "b", "a"]).topics == ("a", "b")


def test_a_projection_must_read_some_topic() -> None:
    class NoTopics(Projection):
        name = "none"

    with pytest.raises(ConfigurationError, match="reads no topic"):
        NoTopics()


def test_handlers_are_registered_by_event_type_name() -> None:
    handlers = Counts().handlers_by_type
    assert set(handlers) == {"bank.account.AccountOpened"}
    assert handlers["bank.account.AccountOpened"][0] is AccountOpened


def test_subclasses_inherit_handlers_and_tables() -> None:
    per_event = AccountBalancesPerEvent()
    assert set(per_event.handlers_by_type) == set(AccountBalances().handlers_by_type)
    assert per_event.tables["accounts"].name == "balances_v1_accounts"


def test_two_handlers_for_one_event_type_in_one_class_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="two handlers for MoneyDeposited"):

        class Twice(Projection):
            name = "twice"

            @on(MoneyDeposited)
            def _a(self, event: MoneyDeposited, ctx: Context) -> None:
                pass

            @on(MoneyDeposited)
            def _b(self, event: MoneyDeposited, ctx: Context) -> None:
                pass


def test_on_needs_an_event_class() -> None:
    with pytest.raises(ConfigurationError, match="Event subclass"):
        on(str)  # type: ignore[type-var]


def test_event_types_include_every_event_of_the_aggregates() -> None:
    assert set(Counts.event_types()) == set(Account.event_types())


def test_the_default_policy_is_stop_with_retries() -> None:
    assert Counts.policy is DeadLetterPolicy.STOP
    assert Counts.retries == 3
