"""Testing kit for users' own code.

- :class:`AggregateSpec`: given/when/then specifications for aggregates (no I/O).
- :class:`EventStoreContract`: the event-store contract suite; subclass it as
  ``TestMyStore(EventStoreContract)`` with a ``store`` fixture to test your own adapter.
- The pytest plugin (``eventsource.testing.plugin``, registered automatically) provides
  real-broker and PostgreSQL fixtures: ``bootstrap_servers``, ``kafka_settings``,
  ``postgres_url``, ``unique_name``, ``create_topic``.
- ``eventsource.testing.history``: the schema history gate; ``eventsource.testing.seed``:
  put events on a topic without the event store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventsource.testing.contract import EventStoreContract
    from eventsource.testing.given import AggregateSpec

__all__ = ["AggregateSpec", "EventStoreContract"]


def __getattr__(name: str) -> Any:
    # Lazy: the pytest plugin lives in this package and is loaded into every test session
    # of every project that installs eventsource, so importing the package must stay cheap
    # and must not import the contract suite (which uses the bank example domain).
    if name == "AggregateSpec":
        from eventsource.testing.given import AggregateSpec

        return AggregateSpec
    if name == "EventStoreContract":
        from eventsource.testing.contract import EventStoreContract

        return EventStoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
