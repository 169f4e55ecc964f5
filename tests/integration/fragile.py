"""An aggregate whose ``@apply`` raises on demand, and the one-member grouped store the
store tests append it to (shared by the admission and ``append_many`` tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eventsource.domain import Aggregate, Event, apply
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import GroupedKafkaEventStore

__all__ = ["FRAGILE", "Fragile", "Poked", "solo_grouped_store"]

FRAGILE = "tests.fragile"


class Poked(Event):
    __namespace__ = "tests.fragile"
    explode: bool = False


class Fragile(Aggregate):
    """An aggregate whose state change raises for some events (a buggy handler)."""

    aggregate_type = FRAGILE

    @apply
    def _poked(self, event: Poked) -> None:
        if event.explode:
            raise RuntimeError("handler failed")


@contextmanager
def solo_grouped_store(
    kafka_settings: KafkaSettings, name: str, directory: Path
) -> Iterator[GroupedKafkaEventStore]:
    """A started grouped store of :class:`Fragile` (application id and topic prefix ``name``),
    its only member ``solo`` serving its one partition; closed afterwards."""
    settings = kafka_settings.model_copy(update={"application_id": name})
    store = GroupedKafkaEventStore(
        settings,
        [Fragile],
        directory=directory,
        member="solo",
        partitions=1,
        topic_prefix=f"{name}.",
    ).start()
    try:
        assert store.wait_serving(60) and len(store.owned) == 1
        yield store
    finally:
        store.close()
