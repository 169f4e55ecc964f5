"""What a projection reads: several topics, and event types it has no handler for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, String, select

from eventsource.codec import EventCodec
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, Projection, ProjectionRunner, on, table
from eventsource.store.kafka import KafkaEventStore
from eventsource.testing.seed import SeedEvent, seed_events
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from examples.bank.projections import sample_history

pytestmark = pytest.mark.integration


class Openings(Projection):
    """Counts openings per topic; ignores every other event type."""

    name = "openings"
    aggregates = (Account,)
    per_topic = table(
        "per_topic", Column("topic", String(249), primary_key=True), Column("n", Integer)
    )

    @on(AccountOpened)
    def _opened(self, event: AccountOpened, ctx: Context) -> None:
        ctx.upsert(
            self.per_topic, {"topic": ctx.position.topic, "n": 1}, key=["topic"], increment=["n"]
        )


def test_a_projection_reads_all_its_topics_and_skips_unhandled_types(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    unique_name: str,
) -> None:
    first, second = create_topic(partitions=2), create_topic(partitions=1)
    history_1 = sample_history(accounts=12, events=300, seed=1)
    history_2 = sample_history(accounts=5, events=80, seed=2)
    seed_events(kafka_settings, first, history_1)
    seed_events(kafka_settings, second, history_2)
    projection = Openings(name="o_" + unique_name[-8:], topics=[first, second])
    with ProjectionRunner(projection, kafka_settings, str(tmp_path / "rm.db")) as runner:
        stats = runner.run_until_caught_up(timeout=60)
        with runner.engine.connect() as conn:
            counts = dict(
                conn.execute(select(projection.per_topic.c.topic, projection.per_topic.c.n)).all()
            )
        statuses = runner.status()

    def opened(history: list[SeedEvent]) -> int:
        return sum(isinstance(e.event, AccountOpened) for e in history)

    assert counts == {first: opened(history_1), second: opened(history_2)}
    assert stats.applied == opened(history_1) + opened(history_2)
    assert stats.ignored == len(history_1) + len(history_2) - stats.applied
    assert {s.topic for s in statuses} == {first, second}
    assert all(s.lag == 0 for s in statuses)  # ignored records advance the checkpoints too


def test_events_without_a_handler_are_never_decoded(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    unique_name: str,
) -> None:
    topic = create_topic(partitions=1)
    seed_events(kafka_settings, topic, [SeedEvent("a-1", AccountOpened(owner="ann"))])
    seed_events(kafka_settings, topic, [SeedEvent("a-1", MoneyDeposited(amount=1), version=2)])
    projection = Openings(name="o_" + unique_name[-8:], topics=[topic])
    # A codec that knows only AccountOpened: decoding the deposit would fail (unknown
    # schema), so the run succeeding proves unhandled records are routed by header alone.
    codec = EventCodec.for_events([AccountOpened])
    with ProjectionRunner(
        projection, kafka_settings, str(tmp_path / "rm.db"), codec=codec
    ) as runner:
        stats = runner.run_until_caught_up(timeout=60)
    assert (stats.applied, stats.ignored, stats.dead_lettered) == (1, 1, 0)


def test_a_projection_with_the_stores_topic_prefix_reads_what_the_store_wrote(
    kafka_settings: KafkaSettings, tmp_path: Path, unique_name: str
) -> None:
    # Issue 12: the projection built "<aggregate_type>.events" without the prefix.
    prefix = f"{unique_name}."
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    with KafkaEventStore(settings, [Account], partitions=1, topic_prefix=prefix) as store:
        positions = [
            p
            for account in ("a", "b", "c")
            for p in store.append(
                Account.aggregate_type, account, [AccountOpened(owner=account)], 0
            ).positions
        ]
        written = store.topic_for(Account.aggregate_type)
    projection = Openings(name="p_" + unique_name[-8:], topic_prefix=prefix)
    assert projection.topics == (written,)
    with ProjectionRunner(projection, settings, str(tmp_path / "rm.db")) as runner:
        # commit markers land after the append returned: wait until they are readable
        assert runner.run_until_caught_up(timeout=60, after=positions).applied == 3
