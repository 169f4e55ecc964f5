"""Poison input on a real broker: policies SKIP, STOP and PARK, and DLQ replay after a fix.

Poison records are crafted bytes produced with a raw transactional producer, mixed among
good events in the same transactions: bad magic bytes, an unknown schema fingerprint, a
truncated body, a payload that violates the event model, and an event whose handler raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import select

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import Event, EventMetadata, Position
from eventsource.errors import DeadLetterError, ProjectionError, ProjectionStoppedError
from eventsource.kafka.admin import describe_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    Context,
    DeadLetterPolicy,
    ProjectionRunner,
    create_read_model_engine,
    on,
)
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.deadletter import (
    KafkaDeadLetterSink,
    PoisonRecord,
    Stage,
    build_dlq_headers,
    dlq_topic,
    list_dead_letters,
    replay_dead_letters,
)
from eventsource.testing.seed import create_topic, wait_readable
from examples.bank.domain import Account, AccountOpened, MoneyDeposited, MoneyWithdrawn
from examples.bank.projections import AccountBalances, cents

pytestmark = pytest.mark.integration

CODEC = EventCodec.for_events(Account.event_types())
POISON_AMOUNT = Decimal("666.00")
Headers = list[tuple[str, str | bytes | None]]
Record = tuple[bytes, bytes, Headers]


class Touchy(AccountBalances):
    """Balances whose deposit handler refuses one amount (a bug fixed in ``Fixed``)."""

    retries = 1
    retry_backoff_s = 0.01

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if event.amount == POISON_AMOUNT:
            raise RuntimeError("refusing 666 (sasl.password=hunter2)")
        self._write(ctx, cents(event.amount))


class TouchySkip(Touchy):
    policy = DeadLetterPolicy.SKIP


class TouchyStop(Touchy):
    policy = DeadLetterPolicy.STOP


class TouchyPark(Touchy):
    policy = DeadLetterPolicy.PARK


class FixedSkip(AccountBalances):
    policy = DeadLetterPolicy.SKIP


class FixedPark(AccountBalances):
    policy = DeadLetterPolicy.PARK


class Stream:
    """Writes records of several accounts, numbering each account's versions."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.sequence: list[int] = []  #: each record's aggregate version (ce_sequence)
        self.records: list[Record] = []
        self.kinds: list[str] = []  #: "good" or the poison kind, per record
        self.events: list[tuple[str, Event] | None] = []

    def _headers(self, account: str, event_type: type[Event]) -> Headers:
        self.versions[account] = self.versions.get(account, 0) + 1
        self.sequence.append(self.versions[account])
        meta = EventMetadata(
            event_id=str(uuid.uuid4()),
            event_type=event_type.event_type(),
            aggregate_type="bank.account",
            aggregate_id=account,
            version=self.versions[account],
            time=datetime.now(UTC),
        )
        return [(k, v) for k, v in build_headers(meta, source="/tests/dlq")]

    def good(self, account: str, event: Event) -> None:
        headers = self._headers(account, type(event))
        self.records.append((account.encode(), CODEC.encode(event), headers))
        self.kinds.append("good")
        self.events.append((account, event))

    def poison(self, account: str, kind: str) -> None:
        deposit = CODEC.encode(MoneyDeposited(amount=Decimal("1.00")))
        value = {
            "bad_magic": b"\x7fnot avro at all",
            "unknown_fingerprint": b"\xc3\x01" + bytes.fromhex("deadbeef00112233") + deposit[10:],
            "truncated": deposit[:11],
            "model_invalid": CODEC.encode(MoneyDeposited.model_construct(amount=Decimal("-5.00"))),
            "raising": CODEC.encode(MoneyDeposited(amount=POISON_AMOUNT)),
        }[kind]
        self.records.append((account.encode(), value, self._headers(account, MoneyDeposited)))
        self.kinds.append(kind)
        raising = (account, MoneyDeposited(amount=POISON_AMOUNT))
        self.events.append(raising if kind == "raising" else None)

    def only(self, *kinds: str) -> list[tuple[str, Event] | None]:
        """The events of records of these kinds; None for the others."""
        return [e if k in kinds else None for e, k in zip(self.events, self.kinds, strict=True)]

    def produce(self, settings: KafkaSettings, topic: str, start: int = 0) -> list[Position]:
        producer = Producer(settings.transactional_producer_config(f"dlq-test-{uuid.uuid4().hex}"))
        records = self.records[start:]
        positions: list[Position | None] = [None] * len(records)

        def delivered(index: int) -> Any:
            def report(err: Any, msg: Any) -> None:
                assert err is None, err
                positions[index] = Position(msg.topic(), msg.partition(), msg.offset())

            return report

        producer.init_transactions(30)
        producer.begin_transaction()
        for index, (key, value, headers) in enumerate(records):
            producer.produce(topic, value, key=key, headers=headers, on_delivery=delivered(index))
        producer.commit_transaction(30)
        producer.flush(10)
        found = [p for p in positions if p is not None]
        assert len(found) == len(records)
        # Commit markers land after commit_transaction() returns: wait until a
        # read_committed reader's end is past every record, or a run "until caught up"
        # started right now may stop short of them.
        wait_readable(settings, found)
        return found


EXPECTED_STAGE = {
    "bad_magic": ("decode", "BadMagicError"),
    "unknown_fingerprint": ("schema", "UnknownSchemaError"),
    "truncated": ("decode", "CorruptPayloadError"),
    "model_invalid": ("decode", "PayloadValidationError"),
    "raising": ("handler", "RuntimeError"),
}


def fold(
    items: Sequence[tuple[str, Event] | None], versions: Sequence[int]
) -> dict[str, tuple[Any, ...]]:
    """Expected rows of AccountBalances (account -> owner, balance, events, version)."""
    rows: dict[str, list[Any]] = {}
    for item, version in zip(items, versions, strict=True):
        if item is None:
            continue
        account, event = item
        row = rows.setdefault(account, [None, 0, 0, 0])
        if isinstance(event, AccountOpened):
            row[0] = event.owner
        elif isinstance(event, MoneyDeposited):
            row[1] += cents(event.amount)
        elif isinstance(event, MoneyWithdrawn):
            row[1] -= cents(event.amount)
        row[2] += 1
        row[3] = version
    return {k: tuple(v) for k, v in rows.items()}


def read_rows(database_url: str, projection: AccountBalances) -> dict[str, tuple[Any, ...]]:
    engine = create_read_model_engine(database_url)
    t = projection.tables["accounts"]
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(t.c.account_id, t.c.owner, t.c.balance_cents, t.c.events, t.c.version)
            ).all()
    finally:
        engine.dispose()
    return {r[0]: tuple(r[1:]) for r in rows}


def header_versions(stream: Stream) -> list[int]:
    return stream.sequence


def projection_name() -> str:
    return f"d{uuid.uuid4().hex[:12]}"


def poison_mix() -> Stream:
    """Six accounts; two records of every poison kind mixed among 48 good events."""
    stream = Stream()
    kinds = list(EXPECTED_STAGE)
    accounts = [f"acc-{i}" for i in range(6)]
    for account in accounts:
        stream.good(account, AccountOpened(owner=f"owner of {account}"))
    for round_ in range(7):
        for i, account in enumerate(accounts):
            stream.good(account, MoneyDeposited(amount=Decimal(round_ * 10 + i + 1)))
            if round_ in (2, 5) and i < len(kinds):
                stream.poison(account, kinds[i])
    return stream


def test_with_policy_skip_every_poison_record_lands_in_the_dlq_and_every_good_one_applies(
    kafka_settings: KafkaSettings, topic: str, database_url: str
) -> None:
    stream = poison_mix()
    positions = stream.produce(kafka_settings, topic)
    name = projection_name()
    projection = TouchySkip(name=name, topics=[topic])

    with ProjectionRunner(projection, kafka_settings, database_url, batch_size=16) as runner:
        stats = runner.run_until_caught_up(timeout=120)

    poison_at = {
        pos: kind for pos, kind in zip(positions, stream.kinds, strict=True) if kind != "good"
    }
    assert stats.dead_lettered == len(poison_at) == 10
    assert read_rows(database_url, projection) == fold(stream.only("good"), header_versions(stream))

    letters = list_dead_letters(kafka_settings, name)
    assert {letter.source: letter for letter in letters}.keys() == poison_at.keys()
    by_position = {pos: rec for pos, rec in zip(positions, stream.records, strict=True)}
    for letter in letters:
        kind = poison_at[letter.source]
        stage, exc_class = EXPECTED_STAGE[kind]
        key, value, headers = by_position[letter.source]
        assert (letter.key, letter.value, list(letter.headers)) == (key, value, headers)
        assert letter.stage == stage
        assert letter.exception_class.endswith(f".{exc_class}")
        assert letter.exception_message
        assert "hunter2" not in letter.exception_message
        assert letter.projection_version == projection.version
        assert letter.dead_lettered_at is not None

    # The runner keeps going: later good events are applied.
    stream.good("acc-0", MoneyDeposited(amount=Decimal("1000")))
    stream.produce(kafka_settings, topic, start=len(stream.records) - 1)
    with ProjectionRunner(projection, kafka_settings, database_url) as runner:
        assert runner.run_until_caught_up(timeout=60).applied == 1
    assert read_rows(database_url, projection) == fold(stream.only("good"), header_versions(stream))

    # After the handler fix, DLQ replay applies the handler's records; the undecodable ones
    # are dead-lettered again (policy SKIP) for a later replay.
    fixed = FixedSkip(name=name, topics=[topic])
    result = replay_dead_letters(fixed, kafka_settings, database_url)
    assert (result.applied, result.dead_lettered_again) == (2, 8)
    # SKIP re-applies a record after its aggregate's later events (use PARK where order
    # matters): sums and counts come out right, last-writer columns (version) do not.
    expected = fold(stream.only("good", "raising"), header_versions(stream))
    assert {k: v[:3] for k, v in read_rows(database_url, fixed).items()} == {
        k: v[:3] for k, v in expected.items()
    }
    again = replay_dead_letters(fixed, kafka_settings, database_url)
    assert (again.applied, again.dead_lettered_again) == (0, 8)


@pytest.mark.parametrize("kind", list(EXPECTED_STAGE))
def test_with_policy_stop_the_runner_stops_at_the_first_poison_record_and_keeps_its_checkpoint(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path, kind: str
) -> None:
    topic = f"{unique_name}.events"
    create_topic(kafka_settings, topic, partitions=1)
    database_url = f"sqlite:///{tmp_path / 'read.db'}"
    stream = Stream()
    stream.good("acc-1", AccountOpened(owner="ann"))
    for amount in (1, 2, 3, 4):
        stream.good("acc-1", MoneyDeposited(amount=Decimal(amount)))
    stream.poison("acc-1", kind)
    stream.good("acc-1", MoneyDeposited(amount=Decimal(100)))
    stream.poison("acc-1", "bad_magic")
    positions = stream.produce(kafka_settings, topic)
    projection = TouchyStop(name=projection_name(), topics=[topic])

    for _attempt in range(2):  # a restart meets the same record again
        with (
            ProjectionRunner(projection, kafka_settings, database_url, batch_size=3) as runner,
            pytest.raises(ProjectionStoppedError, match=rf"{topic}\[0\]@{positions[5].offset}"),
        ):
            runner.run_until_caught_up(timeout=60)
        engine = create_read_model_engine(database_url)
        with engine.connect() as conn:
            stored = read_checkpoints(conn, projection.name, projection.version)
        engine.dispose()
        assert stored == {(topic, 0): positions[5].offset}
        assert read_rows(database_url, projection) == {"acc-1": ("ann", 1000, 5, 5)}
    assert list_dead_letters(kafka_settings, projection.name) == []
    topics = AdminClient(kafka_settings.admin_config()).list_topics(timeout=10).topics
    assert dlq_topic(projection.name) not in topics  # listing does not create the DLQ


def test_with_policy_park_the_aggregates_later_events_go_to_the_dlq_in_order_until_replayed(
    kafka_settings: KafkaSettings, topic: str, database_url: str
) -> None:
    stream = Stream()
    stream.good("acc-a", AccountOpened(owner="ann"))
    stream.good("acc-b", AccountOpened(owner="bob"))
    stream.good("acc-a", MoneyDeposited(amount=Decimal(10)))
    stream.poison("acc-a", "raising")
    stream.good("acc-b", MoneyDeposited(amount=Decimal(7)))
    stream.good("acc-a", MoneyDeposited(amount=Decimal(20)))
    stream.good("acc-a", MoneyWithdrawn(amount=Decimal(5)))
    stream.good("acc-b", MoneyDeposited(amount=Decimal(8)))
    positions = stream.produce(kafka_settings, topic)
    name = projection_name()
    parked = TouchyPark(name=name, topics=[topic])

    with ProjectionRunner(parked, kafka_settings, database_url, batch_size=4) as runner:
        assert runner.run_until_caught_up(timeout=60).dead_lettered == 3
    rows = read_rows(database_url, parked)
    assert rows["acc-a"] == ("ann", 1000, 2, 2)  # only what came before the poison record
    assert rows["acc-b"] == ("bob", 1500, 3, 3)
    letters = list_dead_letters(kafka_settings, name)
    assert [(x.source, x.stage) for x in letters] == [
        (positions[3], "handler"),
        (positions[5], "parked"),
        (positions[6], "parked"),
    ]

    stream.good("acc-a", MoneyDeposited(amount=Decimal(1)))  # still parked: diverted too
    stream.produce(kafka_settings, topic, start=len(stream.records) - 1)
    with ProjectionRunner(parked, kafka_settings, database_url) as runner:
        assert runner.run_until_caught_up(timeout=60).dead_lettered == 1

    fixed = FixedPark(name=name, topics=[topic])
    result = replay_dead_letters(fixed, kafka_settings, database_url)
    assert result.applied == 4
    assert result.unparked == [(topic, "acc-a")]
    assert read_rows(database_url, fixed)["acc-a"] == ("ann", 1000 + 66600 + 2000 - 500 + 100, 6, 6)
    assert replay_dead_letters(fixed, kafka_settings, database_url).applied == 0

    stream.good("acc-a", MoneyDeposited(amount=Decimal(2)))  # unparked: applied directly
    stream.produce(kafka_settings, topic, start=len(stream.records) - 1)
    with ProjectionRunner(fixed, kafka_settings, database_url) as runner:
        stats = runner.run_until_caught_up(timeout=60)
    assert (stats.applied, stats.dead_lettered) == (1, 0)
    assert read_rows(database_url, fixed)["acc-a"] == ("ann", 69200 + 200, 7, 7)


def test_the_dlq_topic_is_created_with_one_partition_kept_forever(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    stream = Stream()
    stream.poison("acc-1", "bad_magic")
    stream.produce(kafka_settings, topic)
    projection = TouchySkip(name=projection_name(), topics=[topic])
    with ProjectionRunner(projection, kafka_settings, f"sqlite:///{tmp_path / 'r.db'}") as runner:
        assert runner.run_until_caught_up(timeout=60).dead_lettered == 1
    info = describe_topic(kafka_settings, dlq_topic(projection.name))
    assert info.partitions == 1
    assert info.config.get("retention.ms") == "-1"


def test_a_dead_letter_the_broker_never_acknowledges_fails_the_flush() -> None:
    nowhere = KafkaSettings(bootstrap_servers="127.0.0.1:9", delivery_timeout_ms=1500)
    sink = KafkaDeadLetterSink(nowhere, "x.dlq", flush_timeout=5)
    sink.send(b"k", b"v", [("dlq_stage", b"decode")])
    with pytest.raises(DeadLetterError, match="batch was not committed"):
        sink.flush()
    sink.close()


def test_a_record_in_the_dlq_that_eventsource_did_not_write_is_reported(
    kafka_settings: KafkaSettings,
) -> None:
    name = projection_name()
    create_topic(kafka_settings, dlq_topic(name), partitions=1)
    producer = Producer(kafka_settings.producer_config())
    producer.produce(dlq_topic(name), b"stray", key=b"k")
    producer.flush(10)
    with pytest.raises(ProjectionError, match=r"no dlq_source_topic.*not written by eventsource"):
        list_dead_letters(kafka_settings, name)


def dead_letter_again(settings: KafkaSettings, name: str, letter: Any, version: int) -> None:
    """Write a copy of ``letter`` to the DLQ, as a crash after the DLQ flush would."""
    poison = PoisonRecord(letter.original(), Stage(letter.stage), RuntimeError("again"))
    sink = KafkaDeadLetterSink(settings, dlq_topic(name))
    sink.send(letter.key, letter.value, build_dlq_headers(poison, projection_version=version))
    sink.flush()
    sink.close()


def test_dlq_replay_applies_a_duplicated_dead_letter_once_and_ignores_other_versions(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'read.db'}"  # DLQ logic: one database is enough
    stream = Stream()
    stream.good("acc-1", AccountOpened(owner="ann"))
    stream.poison("acc-1", "raising")
    stream.produce(kafka_settings, topic)
    name = projection_name()
    with ProjectionRunner(TouchySkip(name=name, topics=[topic]), kafka_settings, database_url) as r:
        assert r.run_until_caught_up(timeout=60).dead_lettered == 1
    [letter] = list_dead_letters(kafka_settings, name)
    dead_letter_again(kafka_settings, name, letter, version=1)
    dead_letter_again(kafka_settings, name, letter, version=7)

    fixed = FixedSkip(name=name, topics=[topic])
    result = replay_dead_letters(fixed, kafka_settings, database_url)

    assert (result.applied, result.duplicates, result.other_version) == (1, 1, 1)
    assert read_rows(database_url, fixed)["acc-1"] == ("ann", 66600, 2, 2)


def test_dlq_replay_under_policy_stop_stops_at_a_record_that_still_fails(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'read.db'}"  # DLQ logic: one database is enough
    topic = f"{unique_name}.events"
    create_topic(kafka_settings, topic, partitions=1)  # one partition: a known source order
    stream = Stream()
    stream.good("acc-1", AccountOpened(owner="ann"))
    stream.poison("acc-1", "raising")
    stream.good("acc-2", AccountOpened(owner="bob"))
    stream.poison("acc-2", "raising")
    stream.produce(kafka_settings, topic)
    name = projection_name()
    with ProjectionRunner(TouchySkip(name=name, topics=[topic]), kafka_settings, database_url) as r:
        assert r.run_until_caught_up(timeout=60).dead_lettered == 2

    class HalfFixed(AccountBalances):
        policy = DeadLetterPolicy.STOP
        retries = 0

        @on(MoneyDeposited)
        def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
            if ctx.meta.aggregate_id == "acc-2":
                raise RuntimeError("still broken for acc-2")
            self._write(ctx, cents(event.amount))

    half = HalfFixed(name=name, topics=[topic])
    with pytest.raises(ProjectionStoppedError, match=rf"{name}\.dlq\[0\]@1") as info:
        replay_dead_letters(half, kafka_settings, database_url)
    assert "still broken for acc-2" in str(info.value)
    rows = read_rows(database_url, half)
    assert (rows["acc-1"][1], rows["acc-2"][1]) == (66600, 0)  # the one before it stays

    fixed = FixedSkip(name=name, topics=[topic])
    result = replay_dead_letters(fixed, kafka_settings, database_url)
    assert (result.applied, result.duplicates) == (1, 1)
    assert {k: v[1] for k, v in read_rows(database_url, fixed).items()} == {
        "acc-1": 66600,
        "acc-2": 66600,
    }


def test_an_existing_dlq_topic_with_several_partitions_is_used_as_it_is(
    kafka_settings: KafkaSettings, topic: str, tmp_path: Path
) -> None:
    name = projection_name()
    create_topic(kafka_settings, dlq_topic(name), partitions=2)
    stream = Stream()
    for i in range(4):
        stream.poison(f"acc-{i}", "truncated")
    stream.produce(kafka_settings, topic)
    projection = TouchySkip(name=name, topics=[topic])
    with ProjectionRunner(projection, kafka_settings, f"sqlite:///{tmp_path / 'r.db'}") as runner:
        assert runner.run_until_caught_up(timeout=60).dead_lettered == 4
    assert describe_topic(kafka_settings, dlq_topic(name)).partitions == 2
    assert len(list_dead_letters(kafka_settings, name)) == 4
