"""Tutorial part 2: append some events, then fold them into a read model.

Run from the repository root, with a broker running (make kafka-up):
.venv/bin/python -m examples.tutorial.project [DATABASE_URL]
DATABASE_URL defaults to SQLite in .eventsource/tutorial/balances.db; a PostgreSQL URL
(postgresql+psycopg://user:password@host:5432/db) folds the same events into PostgreSQL.
"""

# --8<-- [start:append]
import uuid
from decimal import Decimal

from eventsource.kafka.config import KafkaSettings
from eventsource.store import Repository
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account

TOPIC = "tutorial.bank.account.events"  # topic_prefix + bank.account + .events


def open_two_accounts(settings: KafkaSettings) -> tuple[str, str]:
    """Ann and Bob open accounts with 100 each, Ann withdraws 12.50; their ids."""
    ann, bob = f"ann-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    with KafkaEventStore(settings, [Account], partitions=6, topic_prefix="tutorial.") as store:
        accounts = Repository(store, Account)
        for account_id, owner in [(ann, "ann"), (bob, "bob")]:
            account = accounts.create(account_id)
            account.open(owner=owner)
            account.deposit(Decimal("100"))
            accounts.save(account)
        account = accounts.get(ann)
        account.withdraw(Decimal("12.50"))
        accounts.save(account)  # returns positions: where the events landed
    return ann, bob


# --8<-- [end:append]


# --8<-- [start:run]
import sys
from pathlib import Path

from sqlalchemy import text

from eventsource.errors import EventSourceError
from eventsource.projection import ProjectionRunner
from examples.tutorial.balances import Balances

SQLITE = "sqlite:///.eventsource/tutorial/balances.db"


def main(database_url: str) -> None:
    settings = KafkaSettings()  # EVENTSOURCE_BOOTSTRAP_SERVERS, EVENTSOURCE_APPLICATION_ID, ...
    ann, bob = open_two_accounts(settings)
    projection = Balances(topics=[TOPIC])  # the tutorial's topic instead of bank.account.events

    with ProjectionRunner(projection, settings, database_url) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        print(stats)  # RunStats(applied=..., ignored=..., dead_lettered=0, ...)
        for status in runner.status():
            print(status)  # PartitionStatus(topic=..., partition=0, checkpoint=..., lag=0)

        with runner.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT owner, balance_cents, events FROM tutorial_balances_accounts "
                    "WHERE account_id IN (:ann, :bob) ORDER BY owner"
                ),
                {"ann": ann, "bob": bob},
            ).all()
    print(rows)  # [('ann', 8750, 3), ('bob', 10000, 2)]
    assert [tuple(row) for row in rows] == [("ann", 8750, 3), ("bob", 10000, 2)]


if __name__ == "__main__":
    database_url = sys.argv[1] if len(sys.argv) > 1 else SQLITE
    if database_url == SQLITE:
        Path(".eventsource/tutorial").mkdir(parents=True, exist_ok=True)
    try:
        main(database_url)
    except EventSourceError as error:
        # A broker or database that does not answer: one line that names it, no traceback.
        sys.exit(f"error: {error}\n(the database URL is this program's argument)")
# --8<-- [end:run]
