"""Schema evolution on the real broker: the guide's story (docs/how-to/schema-evolution.md).

Orders written under v1 and v2 of ``shop.orders.OrderPlaced`` and under today's v3 share a
topic; a projection reads them all as v3 objects, through Avro resolution (v1 -> v2: the
currency default) and an upcaster (v2 -> v3: the customer split, cents to a decimal total),
with the values the guide promises. In registry mode, a Confluent-framed record and a
single-object record on the same topic are both projected.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from sqlalchemy import Column, String, select

from eventsource.codec import EventCodec, write_schema_files
from eventsource.codec.registry import registry_client, registry_codec
from eventsource.codec.upcasting import Datum, Upcasters
from eventsource.domain import Event
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, Projection, ProjectionRunner, on, table
from eventsource.testing.seed import SeedEvent, seed_events

pytestmark = pytest.mark.integration


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


class OrderPlaced(Event):  # v3
    __namespace__ = "shop.orders"
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


class Orders(Projection):
    name = "orders"
    orders = table(
        "orders",
        Column("order_id", String(64), primary_key=True),
        Column("first_name", String(100)),
        Column("last_name", String(100)),
        Column("total", String(20)),
        Column("currency", String(3)),
    )

    @on(OrderPlaced)
    def _placed(self, event: OrderPlaced, ctx: Context) -> None:
        ctx.upsert(
            self.orders,
            {
                "order_id": ctx.meta.aggregate_id,
                "first_name": event.first_name,
                "last_name": event.last_name,
                "total": str(event.total),
                "currency": event.currency,
            },
            key=["order_id"],
        )


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    """v1, v2 and v3 released one after the other, as `eventsource schemas generate` does."""
    directory = tmp_path / "schemas"
    for model in (OrderPlacedV1, OrderPlacedV2, OrderPlaced):
        write_schema_files([model], directory)
    return directory


@pytest.fixture
def upcasters() -> Upcasters:
    registry = Upcasters()
    registry.upcaster("shop.orders.OrderPlaced", from_version=2)(split_customer_and_cents)
    return registry


def project(
    kafka_settings: KafkaSettings, topic: str, codec: EventCodec, database: Path, name: str
) -> dict[str, tuple[str, str, str, str]]:
    projection = Orders(name=name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, str(database), codec=codec) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        assert stats.dead_lettered == 0
        with runner.engine.connect() as conn:
            return {
                row.order_id: (row.first_name, row.last_name, row.total, row.currency)
                for row in conn.execute(select(projection.orders))
            }


def test_events_written_under_v1_and_v2_are_projected_as_v3(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    schemas: Path,
    upcasters: Upcasters,
    tmp_path: Path,
    unique_name: str,
) -> None:
    topic = create_topic(partitions=2)
    written_by = {
        OrderPlacedV1: [
            SeedEvent("order-1", OrderPlacedV1(customer="Ada Lovelace", total_cents=1999))
        ],
        OrderPlacedV2: [
            SeedEvent(
                "order-2", OrderPlacedV2(customer="Grace Hopper", total_cents=500, currency="USD")
            ),
            SeedEvent("order-3", OrderPlacedV2(customer="Edsger Dijkstra", total_cents=1)),
        ],
        OrderPlaced: [
            SeedEvent(
                "order-4",
                OrderPlaced(
                    first_name="Alan", last_name="Turing", total=Decimal("12.00"), currency="GBP"
                ),
            )
        ],
    }
    for model, events in written_by.items():  # each version's producer knows only its model
        seed_events(
            kafka_settings,
            topic,
            events,
            aggregate_type="shop.order",
            codec=EventCodec.for_events([model]),
        )
    reader = EventCodec.for_events([OrderPlaced], schemas, upcasters)
    rows = project(kafka_settings, topic, reader, tmp_path / "orders.db", "o_" + unique_name[-8:])
    assert rows == {
        "order-1": ("Ada", "Lovelace", "19.99", "EUR"),  # v1: currency from v2's default
        "order-2": ("Grace", "Hopper", "5.00", "USD"),
        "order-3": ("Edsger", "Dijkstra", "0.01", "EUR"),
        "order-4": ("Alan", "Turing", "12.00", "GBP"),
    }


def test_confluent_and_single_object_records_on_one_topic_are_both_projected(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    schemas: Path,
    upcasters: Upcasters,
    tmp_path: Path,
    unique_name: str,
) -> None:
    topic = create_topic(partitions=1)
    client: Any = registry_client(f"mock://{unique_name}")
    registry_writer = registry_codec([OrderPlacedV2], client)
    seed_events(
        kafka_settings,
        topic,
        [SeedEvent("order-r", OrderPlacedV2(customer="Barbara Liskov", total_cents=4200))],
        aggregate_type="shop.order",
        codec=registry_writer,
    )
    seed_events(
        kafka_settings,
        topic,
        [
            SeedEvent(
                "order-s",
                OrderPlaced(first_name="Donald", last_name="Knuth", total=Decimal("2.56")),
            )
        ],
        aggregate_type="shop.order",
        codec=EventCodec.for_events([OrderPlaced]),
    )
    reader = registry_codec([OrderPlaced], client, schemas, upcasters)
    rows = project(kafka_settings, topic, reader, tmp_path / "orders.db", "r_" + unique_name[-8:])
    assert rows == {
        "order-r": ("Barbara", "Liskov", "42.00", "EUR"),  # Confluent framing, v2, upcast
        "order-s": ("Donald", "Knuth", "2.56", "EUR"),  # single-object framing, v3
    }
