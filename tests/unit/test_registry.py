"""Registry mode against confluent-kafka's mock schema registry client (``mock://``)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from eventsource.codec import EventCodec, avro_schema, write_schema_files
from eventsource.codec.registry import registry_client, registry_codec
from eventsource.codec.upcasting import Datum, Upcasters
from eventsource.domain import Event
from eventsource.errors import BadMagicError, ConfigurationError, SchemaError, UnknownSchemaError
from examples.bank.domain import AccountOpened, MoneyDeposited


@pytest.fixture
def client(unique_name: str) -> Any:
    return registry_client(f"mock://{unique_name}")


def test_the_writer_registers_the_schema_and_writes_confluent_framing(client: Any) -> None:
    codec = registry_codec([MoneyDeposited], client)
    payload = codec.encode(MoneyDeposited(amount=Decimal("12.50")))
    schema_id = int.from_bytes(payload[1:5], "big")
    assert payload[:1] == b"\x00"
    registered = client.get_latest_version("bank.account.MoneyDeposited")
    assert registered.schema_id == schema_id == codec.schema_id(MoneyDeposited)
    assert json.loads(registered.schema.schema_str) == avro_schema(MoneyDeposited)


def test_the_body_is_the_same_avro_as_single_object_encoding(client: Any) -> None:
    event = MoneyDeposited(amount=Decimal("3.00"))
    framed = registry_codec([MoneyDeposited], client).encode(event)
    plain = EventCodec.for_events([MoneyDeposited]).encode(event)
    assert framed[5:] == plain[10:]


def test_a_reader_with_only_the_registry_decodes_what_a_writer_registered(client: Any) -> None:
    payload = registry_codec([MoneyDeposited], client).encode(MoneyDeposited(amount=Decimal("1")))
    reader = registry_codec([MoneyDeposited], client)  # a fresh process: nothing cached
    assert reader.decode(payload) == MoneyDeposited(amount=Decimal("1"))


def test_a_registry_reader_decodes_single_object_payloads_too(client: Any) -> None:
    plain = EventCodec.for_events([AccountOpened]).encode(AccountOpened(owner="ada"))
    assert registry_codec([AccountOpened], client).decode(plain) == AccountOpened(owner="ada")


def test_one_id_per_event_type_registered_once(client: Any) -> None:
    codec = registry_codec([MoneyDeposited, AccountOpened], client)
    first = codec.encode(MoneyDeposited(amount=Decimal("1")))
    second = codec.encode(MoneyDeposited(amount=Decimal("2")))
    other = codec.encode(AccountOpened(owner="ada"))
    assert first[:5] == second[:5] != other[:5]
    assert client.get_versions("bank.account.MoneyDeposited") == [1]


def test_a_subject_name_strategy_can_be_chosen(client: Any) -> None:
    codec = registry_codec(
        [MoneyDeposited], client, subject_name=lambda name: f"bank.account.events-{name}"
    )
    codec.encode(MoneyDeposited(amount=Decimal("1")))
    assert client.get_subjects() == ["bank.account.events-bank.account.MoneyDeposited"]


def test_an_id_missing_from_the_registry_is_an_unknown_schema(client: Any) -> None:
    codec = registry_codec([MoneyDeposited], client)
    with pytest.raises(UnknownSchemaError, match="schema id 99 is not in the schema registry"):
        codec.decode(b"\x00" + (99).to_bytes(4, "big") + b"\x02")


def test_a_registry_schema_that_is_not_an_avro_record_is_refused(client: Any) -> None:
    schema_id = client.register_schema("s", Schema(json.dumps({"type": "string"}), "AVRO"))
    codec = registry_codec([MoneyDeposited], client)
    with pytest.raises(UnknownSchemaError, match="not an Avro record"):
        codec.decode(b"\x00" + int(schema_id).to_bytes(4, "big") + b"\x02")


def test_other_framings_are_still_refused(client: Any) -> None:
    with pytest.raises(BadMagicError):
        registry_codec([MoneyDeposited], client).decode(b"\x7f\x00")


def test_an_unreachable_registry_is_a_retriable_schema_error() -> None:
    client = registry_client("http://127.0.0.1:9", **{"timeout": 2, "max.retries": 0})
    codec = registry_codec([MoneyDeposited], client)
    with pytest.raises(SchemaError, match="unreachable") as caught:
        codec.encode(MoneyDeposited(amount=Decimal("1")))
    assert caught.value.retriable


def test_unknown_client_settings_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"no\.such\.setting"):
        registry_client("mock://x", **{"no.such.setting": 1})


class OrderV1(Event):
    __namespace__ = "shop.orders"
    __event_name__ = "OrderPlaced"
    total_cents: int


class OrderV2(Event):
    __namespace__ = "shop.orders"
    __event_name__ = "OrderPlaced"
    total: Decimal


def test_old_registry_schemas_go_through_the_upcasters(client: Any, tmp_path: Path) -> None:
    write_schema_files([OrderV1], tmp_path)
    write_schema_files([OrderV2], tmp_path)
    old = registry_codec([OrderV1], client).encode(OrderV1(total_cents=250))
    upcasters = Upcasters()

    @upcasters.upcaster("shop.orders.OrderPlaced", from_version=1)
    def cents(data: Datum) -> Datum:
        return {"total": Decimal(data["total_cents"]).scaleb(-2)}

    reader = registry_codec([OrderV2], client, tmp_path, upcasters)
    assert reader.decode(old) == OrderV2(total=Decimal("2.50"))
