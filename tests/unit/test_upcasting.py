"""Upcasters: old event data reaches today's model through Avro resolution and typed steps.

The story is the schema-evolution guide's: ``shop.orders.OrderPlaced``
v1 (customer, total_cents) -> v2 (+ currency with a default: Avro resolution) ->
v3 (customer split into first/last name, cents became a Decimal total: an upcaster).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import Field

from eventsource.codec import EventCodec, write_schema_files
from eventsource.codec.upcasting import DEFAULT_UPCASTERS, Datum, Upcasters, upcaster
from eventsource.domain import Event
from eventsource.errors import (
    SchemaError,
    SchemaResolutionError,
    UnknownSchemaError,
    UpcastError,
)


class OrderPlacedV1(Event):
    __namespace__ = "shop.orders"
    __event_name__ = "OrderPlaced"
    customer: str
    total_cents: int


class OrderPlacedV2(Event):
    __namespace__ = "shop.orders"
    __event_name__ = "OrderPlaced"
    customer: str
    total_cents: int
    currency: str = "EUR"


class OrderPlaced(Event):  # v3, today's model
    __namespace__ = "shop.orders"
    __event_name__ = "OrderPlaced"
    first_name: str
    last_name: str
    total: Decimal = Field(max_digits=12, decimal_places=2)
    currency: str = "EUR"


def split_customer_and_cents(data: Datum) -> Datum:
    first, _, last = data["customer"].partition(" ")
    return {
        "first_name": first,
        "last_name": last,
        "total": Decimal(data["total_cents"]).scaleb(-2),
        "currency": data["currency"],
    }


@pytest.fixture
def upcasters() -> Upcasters:
    registry = Upcasters()
    registry.upcaster("shop.orders.OrderPlaced", from_version=2)(split_customer_and_cents)
    return registry


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    for model in (OrderPlacedV1, OrderPlacedV2, OrderPlaced):
        write_schema_files([model], tmp_path)
    return tmp_path


def test_an_upcaster_is_a_plain_function_testable_without_a_codec() -> None:
    v2 = {"customer": "Ada Lovelace", "total_cents": 1999, "currency": "GBP"}
    assert split_customer_and_cents(v2) == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "total": Decimal("19.99"),
        "currency": "GBP",
    }


def test_v2_data_is_upcast_into_the_current_model(schemas: Path, upcasters: Upcasters) -> None:
    old = EventCodec.for_events([OrderPlacedV2]).encode(
        OrderPlacedV2(customer="Ada Lovelace", total_cents=1999, currency="GBP")
    )
    codec = EventCodec.for_events([OrderPlaced], schemas, upcasters)
    assert codec.decode(old) == OrderPlaced(
        first_name="Ada", last_name="Lovelace", total=Decimal("19.99"), currency="GBP"
    )


def test_v1_data_is_resolved_into_v2_then_upcast(schemas: Path, upcasters: Upcasters) -> None:
    old = EventCodec.for_events([OrderPlacedV1]).encode(
        OrderPlacedV1(customer="Grace Hopper", total_cents=500)
    )
    codec = EventCodec.for_events([OrderPlaced], schemas, upcasters)
    assert codec.decode(old) == OrderPlaced(
        first_name="Grace", last_name="Hopper", total=Decimal("5.00"), currency="EUR"
    )


def test_current_data_skips_the_upcasters(schemas: Path, upcasters: Upcasters) -> None:
    codec = EventCodec.for_events([OrderPlaced], schemas, upcasters)
    event = OrderPlaced(first_name="Alan", last_name="Turing", total=Decimal("1.50"))
    assert codec.decode(codec.encode(event)) == event


def test_without_the_upcaster_old_data_fails_naming_the_missing_fields(schemas: Path) -> None:
    old = EventCodec.for_events([OrderPlacedV2]).encode(
        OrderPlacedV2(customer="Ada Lovelace", total_cents=1999)
    )
    codec = EventCodec.for_events([OrderPlaced], schemas, Upcasters())
    with pytest.raises(SchemaResolutionError, match="first_name"):
        codec.decode(old)


class FundsAdded(Event):  # the old name of an event type
    __namespace__ = "bank.ledger"
    amount_cents: int


class Deposited(Event):
    __namespace__ = "bank.ledger"
    amount: Decimal = Field(max_digits=12, decimal_places=2)


def test_an_upcaster_can_rename_an_event_type(tmp_path: Path) -> None:
    write_schema_files([FundsAdded], tmp_path)
    registry = Upcasters()

    @registry.upcaster("bank.ledger.FundsAdded", from_version=1, to_type="bank.ledger.Deposited")
    def funds_added_is_deposited(data: Datum) -> Datum:
        return {"amount": Decimal(data["amount_cents"]).scaleb(-2)}

    old = EventCodec.for_events([FundsAdded]).encode(FundsAdded(amount_cents=250))
    codec = EventCodec.for_events([Deposited], tmp_path, registry)
    assert codec.decode(old) == Deposited(amount=Decimal("2.50"))


def test_a_renamed_event_without_upcaster_or_alias_is_an_unknown_schema(tmp_path: Path) -> None:
    write_schema_files([FundsAdded], tmp_path)
    old = EventCodec.for_events([FundsAdded]).encode(FundsAdded(amount_cents=250))
    codec = EventCodec.for_events([Deposited], tmp_path, Upcasters())
    with pytest.raises(UnknownSchemaError, match=r"bank.ledger.FundsAdded.*upcaster"):
        codec.decode(old)


def test_upcasters_chain_in_version_order(tmp_path: Path) -> None:
    for model in (OrderPlacedV1, OrderPlacedV2, OrderPlaced):
        write_schema_files([model], tmp_path)
    registry = Upcasters()
    seen: list[int] = []

    @registry.upcaster("shop.orders.OrderPlaced", from_version=1)
    def v1_to_v2(data: Datum) -> Datum:
        seen.append(1)
        return {**data, "currency": "USD"}  # v1 orders were all in dollars

    @registry.upcaster("shop.orders.OrderPlaced", from_version=2)
    def v2_to_v3(data: Datum) -> Datum:
        seen.append(2)
        return split_customer_and_cents(data)

    old = EventCodec.for_events([OrderPlacedV1]).encode(
        OrderPlacedV1(customer="Ada Lovelace", total_cents=100)
    )
    decoded = EventCodec.for_events([OrderPlaced], tmp_path, registry).decode(old)
    assert seen == [1, 2]
    assert decoded == OrderPlaced(
        first_name="Ada", last_name="Lovelace", total=Decimal("1.00"), currency="USD"
    )


def test_a_failing_upcaster_raises_an_upcast_error_naming_it(schemas: Path) -> None:
    registry = Upcasters()

    @registry.upcaster("shop.orders.OrderPlaced", from_version=2)
    def broken(data: Datum) -> Datum:
        raise KeyError("surname")

    old = EventCodec.for_events([OrderPlacedV2]).encode(
        OrderPlacedV2(customer="Ada", total_cents=1)
    )
    with pytest.raises(UpcastError, match=r"broken.*v2.*KeyError"):
        EventCodec.for_events([OrderPlaced], schemas, registry).decode(old)


def test_an_upcaster_returning_a_non_dict_is_reported(schemas: Path) -> None:
    registry = Upcasters()
    registry.register("shop.orders.OrderPlaced", from_version=2, function=lambda d: None)  # type: ignore[arg-type,return-value]
    old = EventCodec.for_events([OrderPlacedV2]).encode(
        OrderPlacedV2(customer="Ada", total_cents=1)
    )
    with pytest.raises(UpcastError, match="returned NoneType, not a dict"):
        EventCodec.for_events([OrderPlaced], schemas, registry).decode(old)


class OrderPlacedWithNote(Event):  # v3 as only a default added to v2: Avro resolves it
    __namespace__ = "shop.orders"
    __event_name__ = "OrderPlaced"
    customer: str
    total_cents: int
    currency: str = "EUR"
    note: str = ""


def test_an_upcaster_output_that_does_not_fit_its_version_is_reported(tmp_path: Path) -> None:
    for model in (OrderPlacedV1, OrderPlacedV2, OrderPlacedWithNote):
        write_schema_files([model], tmp_path)
    registry = Upcasters()
    registry.register("shop.orders.OrderPlaced", from_version=1, function=lambda d: {"x": 1})
    old = EventCodec.for_events([OrderPlacedV1]).encode(
        OrderPlacedV1(customer="Ada", total_cents=1)
    )
    codec = EventCodec.for_events([OrderPlacedWithNote], tmp_path, registry)
    with pytest.raises(UpcastError, match=r"does not fit the schema of shop.orders.OrderPlaced"):
        codec.decode(old)


def test_upcast_data_is_resolved_into_a_later_compatible_model(tmp_path: Path) -> None:
    for model in (OrderPlacedV1, OrderPlacedV2, OrderPlacedWithNote):
        write_schema_files([model], tmp_path)
    registry = Upcasters()
    registry.register(
        "shop.orders.OrderPlaced", from_version=1, function=lambda d: {**d, "currency": "USD"}
    )
    old = EventCodec.for_events([OrderPlacedV1]).encode(
        OrderPlacedV1(customer="Ada", total_cents=1)
    )
    codec = EventCodec.for_events([OrderPlacedWithNote], tmp_path, registry)
    assert codec.decode(old) == OrderPlacedWithNote(customer="Ada", total_cents=1, currency="USD")


def test_an_upcaster_for_an_unreleased_version_makes_old_data_unreadable(tmp_path: Path) -> None:
    write_schema_files([OrderPlacedV1], tmp_path)
    registry = Upcasters()
    registry.register("shop.orders.OrderPlaced", from_version=7, function=dict)
    registry.register("shop.orders.OrderPlaced", from_version=1, function=dict, to_version=7)
    old = EventCodec.for_events([OrderPlacedV1]).encode(
        OrderPlacedV1(customer="Ada", total_cents=1)
    )
    with pytest.raises(SchemaResolutionError, match="v7"):
        EventCodec.for_events([OrderPlaced], tmp_path, registry).decode(old)


def test_a_stray_upcaster_above_the_current_version_never_touches_current_data(
    schemas: Path,
) -> None:
    registry = Upcasters()
    registry.register("shop.orders.OrderPlaced", from_version=9, function=dict)
    codec = EventCodec.for_events([OrderPlaced], schemas, registry)
    event = OrderPlaced(first_name="Alan", last_name="Turing", total=Decimal("1.50"))
    assert codec.decode(codec.encode(event)) == event


def test_the_decorator_registers_in_the_default_registry_and_returns_the_function() -> None:
    def noop(data: Datum) -> Datum:
        return data

    assert upcaster("test.upcasting.Nothing", from_version=1)(noop) is noop
    step = DEFAULT_UPCASTERS.get("test.upcasting.Nothing", 1)
    assert step is not None and step.function is noop and step.target_version() == 2


@pytest.mark.parametrize(
    ("name", "version", "match"),
    [
        ("OrderPlaced", 1, "not a full event name"),
        ("shop.orders.OrderPlaced", 0, "from_version must be an integer >= 1"),
        ("shop.orders.OrderPlaced", True, "from_version must be an integer >= 1"),
    ],
)
def test_bad_registrations_are_refused(name: str, version: int, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        Upcasters().register(name, from_version=version, function=dict)


def test_two_upcasters_for_one_version_are_refused() -> None:
    registry = Upcasters()
    registry.register("shop.orders.OrderPlaced", from_version=1, function=dict)
    with pytest.raises(SchemaError, match=r"two upcasters for shop.orders.OrderPlaced v1"):
        registry.register("shop.orders.OrderPlaced", from_version=1, function=dict)


def test_an_upcaster_must_move_forward() -> None:
    with pytest.raises(SchemaError, match="must move data forward"):
        Upcasters().register("shop.orders.OrderPlaced", from_version=2, function=dict, to_version=2)


def test_a_non_callable_upcaster_is_refused() -> None:
    with pytest.raises(SchemaError, match="not callable"):
        Upcasters().register("shop.orders.OrderPlaced", from_version=1, function=42)  # type: ignore[arg-type]


def test_the_schema_evolution_guide_runs() -> None:
    from tests.unit.test_docs_tutorial import run_blocks, runnable_blocks

    guide = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "schema-evolution.md"
    blocks = runnable_blocks(guide)
    assert len(blocks) == 5
    module = run_blocks(blocks, "docs_schema_evolution")
    assert module.codec.decode(module.v1_payload).total == Decimal("19.99")
