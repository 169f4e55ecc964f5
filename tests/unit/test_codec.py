"""EventCodec: events to Avro single-object payloads and back."""

from __future__ import annotations

import datetime as dt
import enum
import io
import json
import uuid
from decimal import Decimal
from typing import Any

import avro.schema
import fastavro
import pytest
from pydantic import BaseModel, Field

from eventsource.codec import EventCodec, SchemaCatalog, avro_schema
from eventsource.domain import Event
from eventsource.errors import (
    BadMagicError,
    CorruptPayloadError,
    DecodeError,
    EncodeError,
    IncompatibleSchemaError,
    PayloadValidationError,
    SchemaError,
    SchemaResolutionError,
    UnknownSchemaError,
)
from examples.bank.domain import AccountClosed, AccountOpened, MoneyDeposited, MoneyWithdrawn

BANK_EVENTS = (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.StrEnum):
    S = "S"
    L = "L"


class Line(BaseModel):
    sku: str
    price: Decimal = Field(max_digits=8, decimal_places=2)
    colour: Colour
    packed_at: dt.datetime | None = None


class OrderPlaced(Event):
    __namespace__ = "shop.order"
    note: str
    quantity: int
    weight: float
    gift: bool
    blob: bytes
    total: Decimal = Field(max_digits=12, decimal_places=2)
    loose: Decimal
    placed_at: dt.datetime
    ship_on: dt.date
    order_id: uuid.UUID
    colour: Colour
    size: Size
    coupon: str | None = None
    tags: list[str]
    counts: dict[str, int]
    lines: list[Line]
    by_colour: dict[str, Colour]
    gift_line: Line | None = None


def an_order(**changes: Any) -> OrderPlaced:
    values: dict[str, Any] = {
        "note": "leave at the door ☂",
        "quantity": -(2**62),
        "weight": 1.25,
        "gift": True,
        "blob": b"\x00\x01\xff",
        "total": Decimal("1234.50"),
        "loose": Decimal("-0.000000001"),
        "placed_at": dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC),
        "ship_on": dt.date(2024, 5, 3),
        "order_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "colour": Colour.BLUE,
        "size": Size.L,
        "coupon": "SPRING",
        "tags": ["a", "b"],
        "counts": {"x": 1, "y": -1},
        "lines": [
            Line(sku="p1", price=Decimal("9.99"), colour=Colour.RED),
            Line(
                sku="p2",
                price=Decimal("0.01"),
                colour=Colour.BLUE,
                packed_at=dt.datetime(2024, 5, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            ),
        ],
        "by_colour": {"first": Colour.RED},
        "gift_line": None,
    }
    values.update(changes)
    return OrderPlaced(**values)


@pytest.fixture
def codec() -> EventCodec:
    return EventCodec.for_events([*BANK_EVENTS, OrderPlaced])


# -- round trips ------------------------------------------------------------------------


def test_every_supported_type_round_trips_to_an_equal_event(codec: EventCodec) -> None:
    order = an_order()
    assert codec.decode(codec.encode(order)) == order


def test_optional_values_round_trip_both_when_set_and_when_none(codec: EventCodec) -> None:
    line = Line(sku="g", price=Decimal("1.00"), colour=Colour.RED, packed_at=None)
    for order in (an_order(gift_line=line, coupon=None), an_order(tags=[], counts={})):
        assert codec.decode(codec.encode(order)) == order


def test_decoded_datetimes_are_the_same_instant_in_utc(codec: EventCodec) -> None:
    decoded = codec.decode(codec.encode(an_order()))
    assert isinstance(decoded, OrderPlaced)
    packed_at = decoded.lines[1].packed_at
    assert packed_at == dt.datetime(2024, 5, 1, 22, 0, tzinfo=dt.UTC)
    assert packed_at is not None and packed_at.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "event",
    [
        AccountOpened(owner="Ada", currency="GBP"),
        MoneyDeposited(amount=Decimal("100.25")),
        MoneyWithdrawn(amount=Decimal("0.01")),
        AccountClosed(),
    ],
)
def test_bank_events_round_trip(codec: EventCodec, event: Event) -> None:
    assert codec.decode(codec.encode(event)) == event


def test_payload_is_single_object_encoding_of_the_current_schema(codec: EventCodec) -> None:
    payload = codec.encode(MoneyDeposited(amount=Decimal("12.50")))
    fingerprint = codec.catalog.fingerprint(MoneyDeposited)
    assert payload[:2] == b"\xc3\x01"
    assert payload[2:10] == fingerprint
    body = fastavro.schemaless_reader(io.BytesIO(payload[10:]), avro_schema(MoneyDeposited))
    assert body == {"amount": Decimal("12.50")}


def test_fingerprint_is_the_avro_reference_crc64_in_little_endian_order() -> None:
    # A schema without logical types: the avro package's canonical form is exact there.
    class Plain(Event):
        __namespace__ = "ref"
        name: str
        count: int

    reference = avro.schema.parse(json.dumps(avro_schema(Plain))).fingerprint("CRC-64-AVRO")
    catalog = SchemaCatalog()
    catalog.register(Plain)
    assert catalog.fingerprint(Plain) == reference
    # The Avro specification's vector for "null": 0x63dd24e7cc258f8a, little-endian.
    assert avro.schema.parse('"null"').fingerprint() == bytes.fromhex("8a8f25cce724dd63")


def test_decode_at_returns_the_event_when_the_payload_is_good(codec: EventCodec) -> None:
    event = AccountOpened(owner="Ada")
    assert codec.decode_at(codec.encode(event), "bank.account.events", 0, 7) == event


# -- schema evolution -------------------------------------------------------------------


def test_payload_from_an_older_writer_schema_resolves_into_the_current_model() -> None:
    class AccountOpenedV1(Event):
        __namespace__ = "bank.account"
        __event_name__ = "AccountOpened"
        owner: str

    old_codec = EventCodec.for_events([AccountOpenedV1])
    payload = old_codec.encode(AccountOpenedV1(owner="Grace"))

    codec = EventCodec.for_events([AccountOpened])
    codec.catalog.add_writer_schema(avro_schema(AccountOpenedV1))
    assert codec.decode(payload) == AccountOpened(owner="Grace", currency="EUR")


def test_older_writer_schemas_load_from_a_directory_of_avsc_files(tmp_path: Any) -> None:
    class DepositV0(Event):
        __namespace__ = "bank.account"
        __event_name__ = "MoneyDeposited"
        amount: Decimal = Field(max_digits=18, decimal_places=2)
        memo: str

    (tmp_path / "old.avsc").write_text(json.dumps(avro_schema(DepositV0)))
    payload = EventCodec.for_events([DepositV0]).encode(DepositV0(amount=Decimal(3), memo="x"))
    codec = EventCodec.for_events(BANK_EVENTS, schema_dir=tmp_path)
    assert codec.decode(payload) == MoneyDeposited(amount=Decimal("3.00"))


def test_writer_schema_known_under_an_alias_resolves_into_the_renamed_model() -> None:
    class FundsAdded(Event):
        __namespace__ = "bank.account"
        amount: int

    class Credited(Event):
        __namespace__ = "bank.account"
        __aliases__ = ("FundsAdded",)
        amount: int

    payload = EventCodec.for_events([FundsAdded]).encode(FundsAdded(amount=5))
    codec = EventCodec.for_events([Credited])
    codec.catalog.add_writer_schema(avro_schema(FundsAdded))
    assert codec.decode(payload) == Credited(amount=5)
    assert codec.catalog.event_type_named("bank.account.FundsAdded") is Credited


def test_writer_added_before_its_model_is_registered_still_resolves() -> None:
    catalog = SchemaCatalog()
    catalog.add_writer_schema(avro_schema(AccountClosed))
    payload = EventCodec.for_events([AccountClosed]).encode(AccountClosed(reason="done"))
    codec = EventCodec(catalog)
    with pytest.raises(UnknownSchemaError, match="no registered event type"):
        codec.decode(payload)
    catalog.register(AccountClosed)
    assert codec.decode(payload) == AccountClosed(reason="done")


# -- decode errors ----------------------------------------------------------------------


def test_none_payload_is_a_corrupt_payload_naming_the_tombstone(codec: EventCodec) -> None:
    with pytest.raises(CorruptPayloadError, match="tombstone"):
        codec.decode(None)


@pytest.mark.parametrize(
    ("payload", "seen"),
    [
        (b'{"amount": 1}', "7B 22 61 6D ... (13 bytes)"),
        (b"", "empty payload"),
        (b"\xc3\x02abcdefgh", "C3 02 61 62"),
    ],
)
def test_payload_without_a_known_framing_is_bad_magic_showing_its_first_bytes(
    codec: EventCodec, payload: bytes, seen: str
) -> None:
    with pytest.raises(BadMagicError) as caught:
        codec.decode(payload)
    assert seen in str(caught.value)


def test_unknown_fingerprint_is_reported_in_hex(codec: EventCodec) -> None:
    payload = b"\xc3\x01" + bytes.fromhex("0102030405060708") + b"\x02"
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        codec.decode(payload)


def test_confluent_framing_without_a_registry_names_the_schema_id(codec: EventCodec) -> None:
    payload = b"\x00" + (4242).to_bytes(4, "big") + b"\x02"
    with pytest.raises(UnknownSchemaError, match="schema id 4242"):
        codec.decode(payload)


def test_confluent_framing_decodes_through_a_registry_hook() -> None:
    class OneSchemaRegistryCatalog(SchemaCatalog):
        def writer_for_registry_id(self, schema_id: int) -> dict[str, Any]:
            if schema_id == 7:
                return avro_schema(MoneyDeposited)
            return super().writer_for_registry_id(schema_id)

    catalog = OneSchemaRegistryCatalog()
    catalog.register(MoneyDeposited)
    body = codec_body(EventCodec(catalog).encode(MoneyDeposited(amount=Decimal("4.20"))))
    decoded = EventCodec(catalog).decode(b"\x00" + (7).to_bytes(4, "big") + body)
    assert decoded == MoneyDeposited(amount=Decimal("4.20"))


def codec_body(payload: bytes) -> bytes:
    return payload[10:]


@pytest.mark.parametrize("length", [1, 2, 9])
def test_single_object_payload_cut_inside_its_header_is_corrupt(
    codec: EventCodec, length: int
) -> None:
    payload = codec.encode(an_order())
    with pytest.raises(CorruptPayloadError, match="shorter than its 10-byte header"):
        codec.decode(payload[:length])


@pytest.mark.parametrize("length", [1, 4])
def test_confluent_payload_cut_inside_its_header_is_corrupt(codec: EventCodec, length: int) -> None:
    with pytest.raises(CorruptPayloadError, match="shorter than its 5-byte header"):
        codec.decode((b"\x00" + (1).to_bytes(4, "big") + b"\x02")[:length])


def test_truncated_body_is_corrupt_naming_the_event_type(codec: EventCodec) -> None:
    payload = codec.encode(an_order())
    with pytest.raises(CorruptPayloadError, match=r"shop.order.OrderPlaced.*truncated") as caught:
        codec.decode(payload[:-5])
    assert caught.value.__cause__ is not None


def test_trailing_garbage_after_the_body_is_corrupt(codec: EventCodec) -> None:
    payload = codec.encode(MoneyDeposited(amount=Decimal("1.00"))) + b"\x00\x00\x00"
    with pytest.raises(CorruptPayloadError, match="3 unexpected bytes"):
        codec.decode(payload)


def test_body_that_is_not_valid_avro_is_corrupt(codec: EventCodec) -> None:
    header = b"\xc3\x01" + codec.catalog.fingerprint(AccountOpened)
    # A string length of 2**60 bytes followed by nothing.
    with pytest.raises(CorruptPayloadError):
        codec.decode(header + b"\x80\x80\x80\x80\x80\x80\x80\x80\x20")


def test_payload_violating_the_model_is_a_validation_error_naming_the_field(
    codec: EventCodec,
) -> None:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, avro_schema(MoneyDeposited), {"amount": Decimal("-5.00")})
    payload = b"\xc3\x01" + codec.catalog.fingerprint(MoneyDeposited) + body.getvalue()
    with pytest.raises(PayloadValidationError, match=r"MoneyDeposited.*amount.*greater than 0"):
        codec.decode(payload)


def test_decode_at_errors_carry_the_record_position(codec: EventCodec) -> None:
    with pytest.raises(BadMagicError) as caught:
        codec.decode_at(b"junk", "bank.account.events", 3, 41)
    error = caught.value
    assert (error.topic, error.partition, error.offset) == ("bank.account.events", 3, 41)
    assert "bank.account.events[3]@41" in str(error)


def test_decode_at_keeps_the_underlying_cause(codec: EventCodec) -> None:
    payload = codec.encode(an_order())[:-5]
    with pytest.raises(CorruptPayloadError) as caught:
        codec.decode_at(payload, "shop.order.events", 0, 1)
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, DecodeError)


# -- encode errors ----------------------------------------------------------------------


def test_naive_datetime_is_refused_at_encode_naming_the_field(codec: EventCodec) -> None:
    order = an_order(placed_at=dt.datetime(2024, 5, 1, 12, 0))
    with pytest.raises(EncodeError, match=r"OrderPlaced: field placed_at holds the naive"):
        codec.encode(order)


def test_naive_datetime_nested_in_a_list_is_refused_naming_the_path(codec: EventCodec) -> None:
    line = Line(sku="n", price=Decimal(1), colour=Colour.RED, packed_at=dt.datetime(2024, 1, 1))
    with pytest.raises(EncodeError, match=r"field lines\[\]\.packed_at"):
        codec.encode(an_order(lines=[line]))


def test_decimal_with_more_places_than_the_default_scale_is_refused(codec: EventCodec) -> None:
    with pytest.raises(EncodeError, match=r"field loose holds 1E-10.*decimal\(38, 9\)"):
        codec.encode(an_order(loose=Decimal("0.0000000001")))


def test_int_beyond_avro_long_is_refused(codec: EventCodec) -> None:
    with pytest.raises(EncodeError, match="OrderPlaced"):
        codec.encode(an_order(quantity=2**64))


def test_encoding_an_unregistered_event_type_says_how_to_register_it(codec: EventCodec) -> None:
    class Stray(Event):
        __namespace__ = "misc"

    with pytest.raises(SchemaError, match=r"Stray.*not registered.*for_events"):
        codec.encode(Stray())


# -- catalog ----------------------------------------------------------------------------


def test_catalog_lists_registered_types_and_finds_them_by_full_name(codec: EventCodec) -> None:
    assert codec.catalog.event_types == (*BANK_EVENTS, OrderPlaced)
    assert codec.catalog.event_type_named("bank.account.MoneyDeposited") is MoneyDeposited
    with pytest.raises(UnknownSchemaError, match=r"bank\.account\.Nope"):
        codec.catalog.event_type_named("bank.account.Nope")


def test_registering_two_models_under_one_full_name_is_refused() -> None:
    class MoneyDeposited(Event):  # same full name as the bank's MoneyDeposited
        __namespace__ = "bank.account"
        cents: int

    catalog = SchemaCatalog()
    catalog.register(MoneyDepositedBank)
    catalog.register(MoneyDepositedBank)  # the same class again is fine
    with pytest.raises(SchemaError, match=r"already registered as 'bank\.account\.MoneyDeposited'"):
        catalog.register(MoneyDeposited)


MoneyDepositedBank = MoneyDeposited


def test_invalid_writer_schemas_are_refused() -> None:
    catalog = SchemaCatalog()
    with pytest.raises(SchemaError, match="must be an Avro record"):
        catalog.add_writer_schema({"type": "string"})  # type: ignore[dict-item]
    with pytest.raises(SchemaError, match="invalid writer schema"):
        catalog.add_writer_schema({"type": "record", "name": "X", "fields": [{"name": "a"}]})


def test_schema_directory_problems_name_the_file(tmp_path: Any) -> None:
    catalog = SchemaCatalog()
    with pytest.raises(SchemaError, match="does not exist"):
        catalog.load_directory(tmp_path / "missing")
    (tmp_path / "broken.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match=r"broken\.avsc"):
        catalog.load_directory(tmp_path)


def test_body_bytes_equal_what_fastavro_writes_with_the_logical_schema(
    codec: EventCodec,
) -> None:
    order = an_order(gift_line=Line(sku="g", price=Decimal("2.50"), colour=Colour.RED))
    datum = order.model_dump()
    datum["colour"] = datum["colour"].value
    datum["lines"] = [{**line, "colour": line["colour"].value} for line in datum["lines"]]
    datum["gift_line"]["colour"] = datum["gift_line"]["colour"].value
    datum["by_colour"] = {k: v.value for k, v in datum["by_colour"].items()}
    reference = io.BytesIO()
    fastavro.schemaless_writer(reference, fastavro.parse_schema(avro_schema(OrderPlaced)), datum)
    assert codec.encode(order)[10:] == reference.getvalue()


def test_decimals_keep_every_digit_up_to_the_default_precision(codec: EventCodec) -> None:
    widest = Decimal("-12345678901234567890123456789.123456789")  # 38 digits, scale 9
    order = an_order(loose=widest)
    decoded = codec.decode(codec.encode(order))
    assert isinstance(decoded, OrderPlaced)
    assert decoded.loose == widest


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (Decimal("123456789012345678901234567890.0"), r"does not fit decimal\(38, 9\)"),
        (Decimal("NaN"), "not a finite decimal"),
        (Decimal("-Infinity"), "not a finite decimal"),
    ],
)
def test_decimal_outside_its_avro_type_is_refused_naming_the_field(
    codec: EventCodec, value: Decimal, complaint: str
) -> None:
    # model_copy(update=...) skips validation, so such values can reach the encoder.
    order = an_order().model_copy(update={"loose": value})
    with pytest.raises(EncodeError, match=rf"OrderPlaced: field loose holds .*{complaint}"):
        codec.encode(order)


def test_writer_the_current_model_cannot_read_is_a_schema_resolution_error() -> None:
    class TicketV1(Event):
        __namespace__ = "help.desk"
        __event_name__ = "TicketOpened"
        title: str

    class TicketV2(Event):  # a new field without a default: v1 data lacks it
        __namespace__ = "help.desk"
        __event_name__ = "TicketOpened"
        title: str
        owner: str

    payload = EventCodec.for_events([TicketV1]).encode(TicketV1(title="printer on fire"))
    codec = EventCodec.for_events([TicketV2])
    codec.catalog.add_writer_schema(avro_schema(TicketV1))
    for _ in range(2):  # the verdict is cached, the error is raised every time
        with pytest.raises(SchemaResolutionError, match=r"help\.desk\.TicketOpened.*owner"):
            codec.decode_at(payload, "help.desk.events", 0, 3)


def test_changed_decimal_scale_is_refused_when_the_old_schema_is_loaded() -> None:
    class PaidInCents(Event):
        __namespace__ = "shop"
        __event_name__ = "Paid"
        amount: Decimal = Field(max_digits=10, decimal_places=2)

    class PaidInMills(Event):
        __namespace__ = "shop"
        __event_name__ = "Paid"
        amount: Decimal = Field(max_digits=10, decimal_places=3)

    # Same fingerprint (canonical forms drop logical types), so the payloads look alike:
    # reading 1.25 written at scale 2 with scale 3 would give 0.125 without any error.
    catalog = EventCodec.for_events([PaidInMills]).catalog
    assert catalog.fingerprint(PaidInMills) == EventCodec.for_events(
        [PaidInCents]
    ).catalog.fingerprint(PaidInCents)
    with pytest.raises(IncompatibleSchemaError, match=r"shop\.Paid.*cannot be told apart"):
        catalog.add_writer_schema(avro_schema(PaidInCents))
    writers_first = SchemaCatalog()
    writers_first.add_writer_schema(avro_schema(PaidInCents))
    with pytest.raises(IncompatibleSchemaError, match="scale"):
        writers_first.register(PaidInMills)


def test_encoding_leaves_the_event_untouched(codec: EventCodec) -> None:
    order = an_order()
    before = order.model_dump()
    first = codec.encode(order)
    assert order.model_dump() == before
    assert codec.encode(order) == first
