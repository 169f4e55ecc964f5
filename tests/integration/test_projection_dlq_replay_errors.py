"""``dlq replay`` classifies a failing record exactly as the runner does (issue 12: the
two copies of "apply one record" had drifted apart)."""

from __future__ import annotations

import contextlib
import gc
import uuid
import weakref
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from eventsource.errors import DecodeError, ProjectionStoppedError
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, DeadLetterPolicy, ProjectionRunner, on
from eventsource.projection.deadletter import list_dead_letters, replay_dead_letters
from eventsource.projection.types import StopOnFailure
from eventsource.testing.seed import SeedEvent, create_topic, seed_events
from examples.bank.domain import AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, cents

pytestmark = pytest.mark.integration


class Refusing(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if event.amount == Decimal(666):
            raise RuntimeError("refusing 666")
        self._write(ctx, cents(event.amount))


class DatabaseLocked(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 2
    retry_backoff_s = 0.0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        raise OperationalError("UPDATE", {}, Exception("database is locked"))


class BadHeader(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 2
    retry_backoff_s = 0.0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        raise DecodeError("ce_time 'noon' is not an ISO 8601 time")


@pytest.fixture
def one_dead_letter(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> tuple[str, str]:
    topic = f"{unique_name}.events"
    create_topic(kafka_settings, topic, partitions=1)
    seed_events(
        kafka_settings,
        topic,
        [
            SeedEvent("a", AccountOpened(owner="a")),
            SeedEvent("a", MoneyDeposited(amount=Decimal(666))),
        ],
    )
    name, database = f"x{uuid.uuid4().hex[:10]}", str(tmp_path / "rm.db")
    with ProjectionRunner(Refusing(name=name, topics=[topic]), kafka_settings, database) as runner:
        assert runner.run_until_caught_up(timeout=60).dead_lettered == 1
    return name, database


def test_a_database_error_during_dlq_replay_is_raised_not_dead_lettered_again(
    kafka_settings: KafkaSettings, one_dead_letter: tuple[str, str], unique_name: str
) -> None:
    name, database = one_dead_letter
    projection = DatabaseLocked(name=name, topics=[f"{unique_name}.events"])
    with pytest.raises(OperationalError, match="database is locked"):
        replay_dead_letters(projection, kafka_settings, database)
    assert len(list_dead_letters(kafka_settings, name)) == 1  # nothing written again


def test_a_decode_error_raised_in_a_handler_during_dlq_replay_is_stage_decode(
    kafka_settings: KafkaSettings, one_dead_letter: tuple[str, str], unique_name: str
) -> None:
    name, database = one_dead_letter
    projection = BadHeader(name=name, topics=[f"{unique_name}.events"])
    result = replay_dead_letters(projection, kafka_settings, database)
    assert result.dead_lettered_again == 1
    again = list_dead_letters(kafka_settings, name)[-1]
    assert (again.stage, again.exception_class) == ("decode", "eventsource.errors.DecodeError")


class StillPoison(Exception):
    """What the handler raises again during the replay (weak references work)."""


class StillRefusing(AccountBalances):
    policy = DeadLetterPolicy.STOP
    retries = 0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        raise StillPoison("still refusing 666")


class ListingBeforeCommit(StopOnFailure):
    """STOP, and a Kafka call that fails before the commit (as the dead-letter handler's
    producer and topic check may, when the broker is away)."""

    def before_commit(self, connection: Connection) -> None:
        admin = AdminClient(
            KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}").admin_config()
        )
        with contextlib.suppress(KafkaException):
            admin.list_topics(timeout=0.05)


def test_dlq_replay_stopped_at_a_poison_record_commits_outside_its_except_block(
    kafka_settings: KafkaSettings, one_dead_letter: tuple[str, str], unique_name: str
) -> None:
    name, database = one_dead_letter
    projection = StillRefusing(name=name, topics=[f"{unique_name}.events"])

    def replay() -> weakref.ref[BaseException]:
        hook = ListingBeforeCommit()
        with pytest.raises(ProjectionStoppedError) as info:
            replay_dead_letters(projection, kafka_settings, database, failure_hook=hook)
        assert isinstance(info.value.__cause__, StillPoison)
        return weakref.ref(info.value.__cause__)

    held = replay()
    gc.collect()
    assert held() is None, "the poison record's failure outlived the replay"
