"""Avro schemas generated from pydantic event models."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Annotated, Any, Optional

import avro.schema
import fastavro
import pytest
from pydantic import AwareDatetime, BaseModel, Field, NaiveDatetime

from eventsource.codec import avro_schema
from eventsource.codec.schema import DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE
from eventsource.domain import Event
from eventsource.errors import UnsupportedTypeError
from examples.bank.domain import MoneyDeposited


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


class Address(BaseModel):
    street: str
    city: str = "Paris"


class CustomerRegistered(Event):
    __namespace__ = "shop.customer"
    name: str
    age: int
    score: float
    active: bool
    avatar: bytes
    credit: Decimal = Field(max_digits=10, decimal_places=3)
    registered_at: dt.datetime
    birthday: dt.date
    customer_id: uuid.UUID
    tier: Tier
    nickname: str | None = None
    tags: list[str]
    limits: dict[str, int]
    home: Address
    work: Address | None = None


EXPECTED_CUSTOMER_REGISTERED: dict[str, Any] = {
    "type": "record",
    "name": "CustomerRegistered",
    "namespace": "shop.customer",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "long"},
        {"name": "score", "type": "double"},
        {"name": "active", "type": "boolean"},
        {"name": "avatar", "type": "bytes"},
        {
            "name": "credit",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 3},
        },
        {"name": "registered_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "birthday", "type": {"type": "int", "logicalType": "date"}},
        {"name": "customer_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["gold", "silver"]}},
        {"name": "nickname", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "limits", "type": {"type": "map", "values": "long"}},
        {
            "name": "home",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "street", "type": "string"},
                    {"name": "city", "type": "string", "default": "Paris"},
                ],
            },
        },
        {"name": "work", "type": ["null", "shop.customer.Address"], "default": None},
    ],
}


def test_schema_of_a_model_with_every_supported_type_is_the_expected_record() -> None:
    assert avro_schema(CustomerRegistered) == EXPECTED_CUSTOMER_REGISTERED


def test_generated_schema_is_valid_for_fastavro_and_for_the_avro_reference_parser() -> None:
    schema = avro_schema(CustomerRegistered)
    parsed = fastavro.parse_schema(schema)
    assert parsed["name"] == "shop.customer.CustomerRegistered"
    assert avro.schema.parse(json.dumps(schema)).fullname == "shop.customer.CustomerRegistered"


def test_bank_event_schema_uses_the_event_name_namespace_and_decimal_constraints() -> None:
    assert avro_schema(MoneyDeposited) == {
        "type": "record",
        "name": "MoneyDeposited",
        "namespace": "bank.account",
        "fields": [
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2},
            }
        ],
    }


def test_schema_generation_is_stable_across_calls_and_returns_fresh_dicts() -> None:
    first = avro_schema(CustomerRegistered)
    first["fields"].clear()
    assert avro_schema(CustomerRegistered) == avro_schema(CustomerRegistered)
    assert avro_schema(CustomerRegistered)["fields"]


def test_explicit_event_name_and_namespace_name_the_record() -> None:
    class Renamed(Event):
        __namespace__ = "billing.invoice"
        __event_name__ = "InvoiceIssued"
        number: str

    schema = avro_schema(Renamed)
    assert (schema["namespace"], schema["name"]) == ("billing.invoice", "InvoiceIssued")


def test_event_aliases_become_avro_aliases() -> None:
    class Renamed(Event):
        __namespace__ = "bank.account"
        __aliases__ = ("FundsDeposited",)
        amount: int

    assert avro_schema(Renamed)["aliases"] == ["bank.account.FundsDeposited"]


def test_nested_types_are_defined_once_in_the_event_namespace_then_referenced() -> None:
    class Moved(Event):
        __namespace__ = "crm.person"
        old: Address
        new: Address
        history: list[Address]
        tier: Tier
        previous_tier: Tier

    fields = {f["name"]: f["type"] for f in avro_schema(Moved)["fields"]}
    assert fields["old"]["name"] == "Address"
    assert fields["new"] == "crm.person.Address"
    assert fields["history"] == {"type": "array", "items": "crm.person.Address"}
    assert fields["tier"]["name"] == "Tier"
    assert fields["previous_tier"] == "crm.person.Tier"


def test_recursive_models_reference_themselves_by_name() -> None:
    class Node(BaseModel):
        label: str
        children: list[Node] = Field(default_factory=list)

    class TreePlanted(Event):
        __namespace__ = "garden"
        root: Node

    root = avro_schema(TreePlanted)["fields"][0]["type"]
    assert root["fields"][1] == {
        "name": "children",
        "type": {"type": "array", "items": "garden.Node"},
        "default": [],
    }
    fastavro.parse_schema(avro_schema(TreePlanted))


def test_decimal_without_constraints_gets_the_documented_default_precision_and_scale() -> None:
    class Priced(Event):
        __namespace__ = "shop"
        price: Decimal
        rounded: Annotated[Decimal, Field(max_digits=5)]
        places: Annotated[Decimal, Field(decimal_places=4)]

    types = [f["type"] for f in avro_schema(Priced)["fields"]]
    assert [(t["precision"], t["scale"]) for t in types] == [
        (DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE),
        (5, 5),
        (DEFAULT_DECIMAL_PRECISION, 4),
    ]


def test_constraints_inside_containers_and_optionals_are_honoured() -> None:
    class Basket(Event):
        __namespace__ = "shop"
        prices: list[Annotated[Decimal, Field(max_digits=6, decimal_places=2)]]
        discount: Annotated[Decimal, Field(max_digits=4, decimal_places=1)] | None = None

    prices, discount = (f["type"] for f in avro_schema(Basket)["fields"])
    assert prices["items"]["scale"] == 2
    assert discount[1]["precision"] == 4


def test_pydantic_aware_datetime_and_optional_spellings_map_like_their_plain_types() -> None:
    class Spellings(Event):
        __namespace__ = "misc"
        at: AwareDatetime
        a: Optional[int] = None  # noqa: UP045 - the old spelling must work too
        b: int | None = None
        c: tuple[str, ...] = ()
        d: frozenset[str] = frozenset()

    fields = avro_schema(Spellings)["fields"]
    assert fields[0]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields[1]["type"] == fields[2]["type"] == ["null", "long"]
    assert fields[3] == {"name": "c", "type": {"type": "array", "items": "string"}, "default": []}
    assert fields[4]["type"] == {"type": "array", "items": "string"}


def test_defaults_are_written_in_avro_json_form() -> None:
    class Defaults(Event):
        __namespace__ = "misc"
        amount: Decimal = Field(default=Decimal("-1.5"), max_digits=5, decimal_places=2)
        raw: bytes = b"\x00\xff"
        at: dt.datetime = dt.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=dt.UTC)
        day: dt.date = dt.date(1970, 1, 11)
        ident: uuid.UUID = uuid.UUID(int=1)
        tier: Tier = Tier.SILVER
        limits: dict[str, int] = Field(default_factory=dict)
        home: Address = Address(street="Main")
        maybe: int | None = 7

    fields = {f["name"]: f for f in avro_schema(Defaults)["fields"]}
    # -150 as 2 bytes of big-endian two's complement, written as code points
    assert fields["amount"]["default"] == "\xff\x6a"
    assert fields["raw"]["default"] == "\x00\xff"
    assert fields["at"]["default"] == 1_000_005
    assert fields["day"]["default"] == 10
    assert fields["ident"]["default"] == "00000000-0000-0000-0000-000000000001"
    assert fields["tier"]["default"] == "silver"
    assert fields["limits"]["default"] == {}
    assert fields["home"]["default"] == {"street": "Main", "city": "Paris"}
    assert fields["maybe"] == {"name": "maybe", "type": ["long", "null"], "default": 7}
    avro.schema.parse(json.dumps(avro_schema(Defaults)))


def test_a_default_factory_that_is_not_an_empty_collection_gives_no_avro_default() -> None:
    class Stamped(Event):
        __namespace__ = "misc"
        ident: uuid.UUID = Field(default_factory=uuid.uuid4)

    assert "default" not in avro_schema(Stamped)["fields"][0]


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        (Any, "has no Avro mapping"),
        (int | str, "only Optional"),
        (tuple[int, str], "fixed-length tuples"),
        (dict[int, str], "str keys"),
        (NaiveDatetime, "naive datetimes"),
        (dt.time, "has no Avro mapping"),
        (list, "needs item types"),
    ],
)
def test_unsupported_types_raise_naming_the_model_and_the_field(
    annotation: Any, reason: str
) -> None:
    class Strange(Event):
        __namespace__ = "misc"
        oddity: annotation  # type: ignore[valid-type]

    with pytest.raises(UnsupportedTypeError) as caught:
        avro_schema(Strange)
    message = str(caught.value)
    assert "Strange" in message
    assert "oddity" in message
    assert reason in message


def test_enum_with_values_that_are_not_avro_names_is_unsupported() -> None:
    class Level(enum.IntEnum):
        LOW = 1

    class Leveled(Event):
        __namespace__ = "misc"
        level: Level

    with pytest.raises(UnsupportedTypeError, match=r"Leveled.*level.*enum Level"):
        avro_schema(Leveled)


def test_two_classes_with_the_same_name_in_one_event_are_rejected() -> None:
    def make_address() -> type[BaseModel]:
        class Address(BaseModel):
            line: str

        return Address

    other_address = make_address()

    class TwoAddresses(Event):
        __namespace__ = "misc"
        a: Address
        b: other_address  # type: ignore[valid-type]

    with pytest.raises(UnsupportedTypeError, match=r"would both be named 'misc.Address'"):
        avro_schema(TwoAddresses)


def test_field_aliases_are_rejected() -> None:
    class Aliased(Event):
        __namespace__ = "misc"
        value: int = Field(alias="Value")

    with pytest.raises(UnsupportedTypeError, match=r"Aliased.value.*aliases"):
        avro_schema(Aliased)


def test_none_default_on_a_non_optional_field_is_rejected() -> None:
    class Sloppy(Event):
        __namespace__ = "misc"
        value: int = None  # type: ignore[assignment]

    with pytest.raises(UnsupportedTypeError, match=r"Sloppy.value.*default None"):
        avro_schema(Sloppy)


def test_default_that_does_not_fit_the_decimal_scale_is_rejected() -> None:
    class Precise(Event):
        __namespace__ = "misc"
        value: Decimal = Field(default=Decimal("0.125"), max_digits=5, decimal_places=3)
        coarse: Annotated[Decimal, Field(max_digits=5, decimal_places=1)] = Decimal("0.25")

    with pytest.raises(UnsupportedTypeError, match=r"coarse.*more than 1 decimal places"):
        avro_schema(Precise)


def test_optional_field_without_a_python_default_still_defaults_to_null() -> None:
    class Noted(Event):
        __namespace__ = "misc"
        note: str | None  # required in Python, but old data without it reads as None

    assert avro_schema(Noted)["fields"] == [
        {"name": "note", "type": ["null", "string"], "default": None}
    ]
