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

from eventsource.testing.contract import EventStoreContract
from eventsource.testing.given import AggregateSpec

__all__ = ["AggregateSpec", "EventStoreContract"]
