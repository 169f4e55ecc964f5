"""The dead-letter guarantee under a real crash: the runner process dies after its dead
letters were flushed and before the batch's database commit. Nothing is lost or skipped;
the dead letter exists twice, and ``dlq replay`` applies it once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from eventsource.kafka.config import KafkaSettings
from eventsource.projection import DeadLetterPolicy, create_read_model_engine
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.deadletter import list_dead_letters, replay_dead_letters
from eventsource.testing.seed import SeedEvent, create_topic, seed_events
from examples.bank.domain import AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, sys
    from decimal import Decimal
    from eventsource.kafka.config import KafkaSettings
    from eventsource.projection import Context, DeadLetterPolicy, ProjectionRunner, on
    from eventsource.projection.deadletter import dead_letter_hook
    from examples.bank.domain import MoneyDeposited
    from examples.bank.projections import AccountBalances, cents

    name, topic, database, crash = sys.argv[1:5]
    policy = DeadLetterPolicy[sys.argv[5] if len(sys.argv) > 5 else "SKIP"]

    class Touchy(AccountBalances):
        retries = 0

        @on(MoneyDeposited)
        def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
            if event.amount == Decimal("666") and crash != "fixed":
                raise RuntimeError("refusing 666")
            self._write(ctx, cents(event.amount))

    Touchy.policy = policy
    settings = KafkaSettings(bootstrap_servers=os.environ["EVENTSOURCE_BOOTSTRAP_SERVERS"])
    projection = Touchy(name=name, topics=[topic])
    hook = dead_letter_hook(projection, settings)
    if crash == "crash":
        flush_then_commit = hook.before_commit

        def before_commit(connection):
            flush_then_commit(connection)  # the dead letters are durable now...
            if hook.sent:
                os._exit(17)  # ...and the process dies before the database commit

        hook.before_commit = before_commit
    # A fresh group per run: the killed member would hold its partition for a session timeout.
    group = f"{name}.{crash}"
    with ProjectionRunner(
        projection, settings, database, failure_hook=hook, group_id=group
    ) as runner:
        print(runner.run_until_caught_up(timeout=60).dead_lettered)
    """
)


class Fixed(AccountBalances):
    policy = DeadLetterPolicy.SKIP


def run_child(
    name: str, topic: str, database: str, mode: str, policy: str = "SKIP"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", CHILD, name, topic, database, mode, policy],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_crash_between_the_dlq_flush_and_the_commit_loses_nothing_and_applies_once(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}.events"
    create_topic(kafka_settings, topic, partitions=1)
    seed_events(
        kafka_settings,
        topic,
        [
            SeedEvent("acc-1", AccountOpened(owner="ann")),
            SeedEvent("acc-1", MoneyDeposited(amount=Decimal(5))),
            SeedEvent("acc-1", MoneyDeposited(amount=Decimal(666))),
            SeedEvent("acc-1", MoneyDeposited(amount=Decimal(7))),
        ],
    )
    name = f"c{uuid.uuid4().hex[:12]}"
    database = f"sqlite:///{tmp_path / 'read.db'}"

    crashed = run_child(name, topic, database, "crash")
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    engine = create_read_model_engine(database)
    projection = Fixed(name=name, topics=[topic])
    table = projection.tables["accounts"]
    try:
        with engine.connect() as conn:
            assert read_checkpoints(conn, name, 1).get((topic, 0), 0) == 0  # nothing committed
            assert conn.execute(select(table)).all() == []
        assert len(list_dead_letters(kafka_settings, name)) == 1  # yet the dead letter is kept

        restarted = run_child(name, topic, database, "normal")
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        letters = list_dead_letters(kafka_settings, name)
        assert len(letters) == 2 and letters[0].source == letters[1].source  # at-least-once
        with engine.connect() as conn:
            assert read_checkpoints(conn, name, 1)[(topic, 0)] >= 4  # past every record
            row = conn.execute(select(table.c.balance_cents, table.c.events)).one()
        assert tuple(row) == (1200, 3)

        result = replay_dead_letters(projection, kafka_settings, database)
        assert (result.applied, result.duplicates) == (1, 1)
        with engine.connect() as conn:
            row = conn.execute(select(table.c.balance_cents, table.c.events)).one()
        assert tuple(row) == (1200 + 66600, 4)
    finally:
        engine.dispose()


class FixedParking(AccountBalances):
    policy = DeadLetterPolicy.PARK


@pytest.mark.parametrize("policy", ["SKIP", "PARK"])
def test_an_orphan_dead_letter_of_a_batch_that_never_committed_is_not_replayed(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path, policy: str
) -> None:
    # Issue 12, defect 3. The process dies after the DLQ flush, before the commit; the
    # restarted runner (the handler fixed meanwhile) applies the record normally. Before,
    # `dlq replay` applied the orphan dead letter a second time.
    topic = f"{unique_name}.events"
    create_topic(kafka_settings, topic, partitions=1)
    seed_events(
        kafka_settings,
        topic,
        [
            SeedEvent("acc-1", AccountOpened(owner="ann")),
            SeedEvent("acc-1", MoneyDeposited(amount=Decimal(5))),
            SeedEvent("acc-1", MoneyDeposited(amount=Decimal(666))),
            SeedEvent("acc-1", MoneyDeposited(amount=Decimal(7))),
        ],
    )
    name = f"o{uuid.uuid4().hex[:12]}"
    database = f"sqlite:///{tmp_path / 'read.db'}"

    crashed = run_child(name, topic, database, "crash", policy)
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    orphans = list_dead_letters(kafka_settings, name)  # 666, and under PARK the 7 after it
    assert len(orphans) == (1 if policy == "SKIP" else 2)
    restarted = run_child(name, topic, database, "fixed", policy)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert restarted.stdout.strip() == "0"  # nothing dead-lettered: 666 applied normally

    cls = Fixed if policy == "SKIP" else FixedParking
    projection = cls(name=name, topics=[topic])
    table = projection.tables["accounts"]
    engine = create_read_model_engine(database)
    try:
        with engine.connect() as conn:
            before = tuple(conn.execute(select(table.c.balance_cents, table.c.events)).one())
        assert before == (500 + 66600 + 700, 4)
        result = replay_dead_letters(projection, kafka_settings, database)
        assert (result.applied, result.orphans) == (0, len(orphans))
        with engine.connect() as conn:
            after = tuple(conn.execute(select(table.c.balance_cents, table.c.events)).one())
        assert after == before  # applied once, not twice
    finally:
        engine.dispose()
