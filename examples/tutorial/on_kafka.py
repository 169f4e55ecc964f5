"""Tutorial part 1: the same code on Kafka.

Run from the repository root, with a broker running (make kafka-up):
.venv/bin/python -m examples.tutorial.on_kafka
"""

import uuid
from decimal import Decimal

from eventsource.errors import ConcurrencyError
from eventsource.kafka.config import KafkaSettings
from eventsource.store import Repository
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account, AccountClosed

settings = KafkaSettings()  # EVENTSOURCE_BOOTSTRAP_SERVERS (else 127.0.0.1:9092), ...
account_id = f"acc-{uuid.uuid4().hex[:8]}"  # ids are yours to choose; here, a fresh one

with KafkaEventStore(settings, [Account], partitions=6, topic_prefix="tutorial.") as store:
    accounts = Repository(store, Account)
    account = accounts.create(account_id)
    account.open(owner="ann")
    account.deposit(Decimal("100"))
    result = accounts.save(account)
    print(result.positions)  # (Position(topic='tutorial.bank.account.events', ...), ...)

    loaded = accounts.get(account_id)  # from the owner's in-memory index: no topic scan
    assert (loaded.balance, loaded.version) == (Decimal("100"), 2)

    try:
        store.append("bank.account", account_id, [AccountClosed()], expected_version=1)
    except ConcurrencyError as error:
        print(error)  # at version 2, expected 1: nothing was written
