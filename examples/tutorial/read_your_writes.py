"""Tutorial part 2: read your own writes.

Run from the repository root, with a broker running (make kafka-up):
.venv/bin/python -m examples.tutorial.read_your_writes
"""

import threading
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import ProjectionRunner, wait_for_positions
from eventsource.store import Repository
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account
from examples.tutorial.balances import Balances
from examples.tutorial.project import SQLITE, TOPIC, open_two_accounts

settings = KafkaSettings()
Path(".eventsource/tutorial").mkdir(parents=True, exist_ok=True)
projection = Balances(topics=[TOPIC])
_, bob = open_two_accounts(settings)

stop = threading.Event()
runner = ProjectionRunner(projection, settings, SQLITE, poll_timeout=0.1)
service = threading.Thread(target=runner.run, args=(stop,))
service.start()  # in real life: a separate `eventsource run` process

with KafkaEventStore(settings, [Account], partitions=6, topic_prefix="tutorial.") as store:
    accounts = Repository(store, Account)
    account = accounts.get(bob)
    account.deposit(Decimal("1.25"))
    result = accounts.save(account)

wait_for_positions(projection, SQLITE, result.positions, timeout=30)
with runner.engine.connect() as conn:
    balance = conn.execute(
        text("SELECT balance_cents FROM tutorial_balances_accounts WHERE account_id = :id"),
        {"id": bob},
    ).scalar_one()
print(f"{bob}: {balance} cents")  # bob-...: 10125 cents
assert balance == 10125

stop.set()
service.join()
runner.close()
