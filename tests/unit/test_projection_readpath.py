"""The projection read path: lazily read metadata, the codec's fast decode, routing of
renamed event types, dead-letter counting and the read-model database error classes.

Batches go to a real SQLite database, with record objects shaped like confluent-kafka's
``Message`` (the applier only calls its accessors)."""

from __future__ import annotations

import dataclasses
import pickle
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from eventsource.codec import (
    EventCodec,
    avro_schema,
    build_headers,
    parse_headers,
    write_schema_files,
)
from eventsource.codec.envelope import _REQUIRED, RecordMetadata, read_headers
from eventsource.codec.upcasting import Datum, Upcasters
from eventsource.domain import Event, EventMetadata
from eventsource.errors import (
    CorruptPayloadError,
    DecodeError,
    PayloadValidationError,
    ProjectionError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Context, NullListener, Projection, ProjectionRunner, RunStats, on
from eventsource.projection.batch import BatchApplier, BatchOutcome
from eventsource.projection.dberrors import is_permanent_db_error, is_transient_db_error
from eventsource.projection.deadletter import (
    DeadLetterHandler,
    DeadLetterPolicy,
    Headers,
    SqlParkingLot,
)
from eventsource.projection.store import create_read_model_engine, ensure_schema
from eventsource.projection.types import Stage, StopOnFailure
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances, AccountBalancesPerEvent

CODEC = EventCodec.for_events(Account.event_types())
TOPIC = "bank.account.events"
TIME = datetime(2026, 5, 1, 12, tzinfo=UTC)


def headers(event_type: str, aggregate_id: str = "a", version: int = 1) -> list[tuple[str, bytes]]:
    meta = EventMetadata("e-1", event_type, "bank.account", aggregate_id, version, TIME)
    return build_headers(meta, source="/test")


def with_header(base: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in base]


class Record:
    """A consumed record: what ``Consumer.consume`` returns, minus the C extension."""

    def __init__(
        self, offset: int, aggregate_id: str, value: bytes, hdrs: list[tuple[str, bytes]]
    ) -> None:
        self._offset, self._key, self._value, self._headers = (
            offset,
            aggregate_id.encode(),
            value,
            hdrs,
        )

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def record(offset: int, event: Event, aggregate_id: str = "a", codec: EventCodec = CODEC) -> Record:
    hdrs = headers(event.event_type(), aggregate_id, offset + 1)
    return Record(offset, aggregate_id, codec.encode(event), hdrs)


def deposit(offset: int, amount: str, aggregate_id: str = "a") -> Record:
    return record(offset, MoneyDeposited(amount=Decimal(amount)), aggregate_id)


class DeadLetters(NullListener):
    def __init__(self) -> None:
        self.seen: list[Stage] = []

    def on_dead_letter(self, stage: Stage, exc: BaseException) -> None:
        self.seen.append(stage)


@dataclass
class ListSink:
    sent: list[tuple[bytes | None, bytes | None, Headers]] = field(default_factory=list)

    def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self.sent.append((key, value, headers))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_read_model_engine(tmp_path / "rm.db")
    yield engine
    engine.dispose()


def rows(engine: Engine, projection: AccountBalances) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        return {
            r.account_id: (r.balance_cents, r.events)
            for r in conn.execute(select(projection.accounts))
        }


def positions(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    return {(TOPIC, 0): records[-1].offset() + 1}


# --- lazily read metadata -----------------------------------------------------------------
def test_record_metadata_equals_the_eagerly_parsed_metadata() -> None:
    hdrs = headers("bank.account.MoneyDeposited", "acc-7", 12)
    lazy, eager = read_headers(hdrs), parse_headers(hdrs)
    assert isinstance(lazy, EventMetadata)
    assert lazy == eager and eager == lazy and hash(lazy) == hash(eager)
    assert (lazy.aggregate_id, lazy.version, lazy.time) == ("acc-7", 12, TIME)
    assert pickle.loads(pickle.dumps(lazy)) == eager


def test_record_metadata_can_be_copied_with_changes_like_any_event_metadata() -> None:
    lazy = read_headers(headers("bank.account.MoneyDeposited", "acc-7", 12))
    changed = dataclasses.replace(lazy, aggregate_id="acc-8", version=13)
    assert changed == dataclasses.replace(lazy.parsed(), aggregate_id="acc-8", version=13)
    assert (changed.aggregate_id, changed.version, changed.time) == ("acc-8", 13, TIME)


@pytest.mark.parametrize("name", _REQUIRED)
def test_a_record_missing_a_required_header_is_refused_before_routing(name: str) -> None:
    hdrs = [(k, v) for k, v in headers("bank.account.MoneyDeposited") if k != name]
    with pytest.raises(DecodeError, match=name):
        read_headers(hdrs)


def test_a_malformed_header_value_raises_when_that_field_is_read() -> None:
    hdrs = with_header(headers("bank.account.MoneyDeposited"), "ce_time", b"yesterday")
    meta = read_headers(hdrs)
    assert meta.event_type == "bank.account.MoneyDeposited"
    assert meta.aggregate_id == "a"
    with pytest.raises(DecodeError, match="ce_time is 'yesterday'"):
        _ = meta.time


def test_a_non_decimal_sequence_raises_naming_the_header() -> None:
    meta = read_headers(with_header(headers("bank.account.MoneyDeposited"), "ce_sequence", b"x1"))
    assert isinstance(meta, RecordMetadata)
    with pytest.raises(DecodeError, match="ce_sequence is 'x1'"):
        _ = meta.version


# --- the codec's fast path ---------------------------------------------------------------
def test_the_fast_decode_still_validates_the_model() -> None:
    invalid = MoneyDeposited.model_construct(amount=Decimal("-5.00"))  # gt=0 violated
    payload = CODEC.encode(invalid)
    for _ in range(2):  # the second decode uses the learnt fast path
        with pytest.raises(PayloadValidationError, match=r"amount.*greater than 0") as caught:
            CODEC.decode_at(payload, TOPIC, 0, 9)
        assert "bank.account.events[0]@9" in str(caught.value)


def test_the_fast_decode_refuses_trailing_bytes() -> None:
    payload = CODEC.encode(MoneyDeposited(amount=Decimal("1.00")))
    assert CODEC.decode_at(payload, TOPIC, 0, 1) == MoneyDeposited(amount=Decimal("1.00"))
    with pytest.raises(CorruptPayloadError, match="1 unexpected bytes"):
        CODEC.decode_at(payload + b"\x00", TOPIC, 0, 2)


# --- renamed event types -----------------------------------------------------------------
class FundsAdded(Event):  # the old name of Credited
    __namespace__ = "test.ledger"
    amount_cents: int


class Credited(Event):
    __namespace__ = "test.ledger"
    amount: Decimal = Field(max_digits=12, decimal_places=2)


class Credits(Projection):
    name = "credits"
    version = 1
    seen: list[tuple[str, Decimal]]

    @on(Credited)
    def _credited(self, event: Credited, ctx: Context) -> None:
        self.seen.append((ctx.meta.aggregate_id, event.amount))


def test_a_type_renamed_by_an_upcaster_reaches_the_handler_of_the_new_type(
    engine: Engine, tmp_path: Path
) -> None:
    write_schema_files([FundsAdded], tmp_path)
    upcasters = Upcasters()

    @upcasters.upcaster("test.ledger.FundsAdded", from_version=1, to_type="test.ledger.Credited")
    def funds_added_is_credited(data: Datum) -> Datum:
        return {"amount": Decimal(data["amount_cents"]).scaleb(-2)}

    old = EventCodec.for_events([FundsAdded])
    codec = EventCodec.for_events([Credited], tmp_path, upcasters)
    projection = Credits(topics=[TOPIC])
    projection.seen = []
    ensure_schema(engine, projection)
    applier = BatchApplier(projection, engine, codec, StopOnFailure(), NullListener())
    records = [
        record(0, FundsAdded(amount_cents=250), "x", old),
        record(1, Credited(amount=Decimal("1.10")), "y", codec),
    ]
    outcome = applier.apply(records, positions(records))
    assert (outcome.applied, outcome.ignored) == (2, 0)
    assert projection.seen == [("x", Decimal("2.50")), ("y", Decimal("1.10"))]


class Topped(Event):  # renamed to ToppedUp, listed as its alias
    __namespace__ = "test.ledger"
    amount: int


class ToppedUp(Event):
    __namespace__ = "test.ledger"
    __aliases__ = ("Topped",)
    amount: int


class TopUps(Projection):
    name = "top_ups"
    version = 1
    seen: list[int]

    @on(ToppedUp)
    def _topped_up(self, event: ToppedUp, ctx: Context) -> None:
        self.seen.append(event.amount)


def test_a_type_renamed_through_an_alias_reaches_the_handler_of_the_new_type(
    engine: Engine,
) -> None:
    codec = EventCodec.for_events([ToppedUp])
    codec.catalog.add_writer_schema(avro_schema(Topped))
    projection = TopUps(topics=[TOPIC])
    projection.seen = []
    ensure_schema(engine, projection)
    applier = BatchApplier(projection, engine, codec, StopOnFailure(), NullListener())
    old = EventCodec.for_events([Topped])
    records = [record(0, Topped(amount=5), "x", old), record(1, ToppedUp(amount=7), "x", codec)]
    outcome = applier.apply(records, positions(records))
    assert (outcome.applied, outcome.ignored, projection.seen) == (2, 0, [5, 7])


def test_a_type_without_handler_or_rename_is_ignored_without_decoding(engine: Engine) -> None:
    projection = TopUps(topics=[TOPIC])
    projection.seen = []
    ensure_schema(engine, projection)
    codec = EventCodec.for_events([ToppedUp])
    applier = BatchApplier(projection, engine, codec, StopOnFailure(), NullListener())
    unknown = Record(0, "x", b"not avro at all", headers("test.ledger.Unrelated"))
    outcome = applier.apply([unknown], positions([unknown]))
    assert (outcome.applied, outcome.ignored, outcome.dead_lettered) == (0, 1, 0)


# --- dead letters are counted once -------------------------------------------------------
class Fussy(AccountBalances):
    """Refuses deposits of exactly 6.66."""

    policy = DeadLetterPolicy.PARK
    retries = 0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if event.amount == Decimal("6.66"):
            raise ValueError("no devil's deposits")
        super()._deposited(event, ctx)


def test_records_diverted_because_their_aggregate_is_parked_count_as_dead_letters(
    engine: Engine,
) -> None:
    projection = Fussy(name=f"f{uuid.uuid4().hex[:6]}", topics=[TOPIC])
    ensure_schema(engine, projection)
    sink, listener = ListSink(), DeadLetters()
    hook = DeadLetterHandler(
        projection.name,
        projection.version,
        DeadLetterPolicy.PARK,
        lambda: sink,
        SqlParkingLot(projection.name, projection.version),
    )
    applier = BatchApplier(projection, engine, CODEC, hook, listener)
    first = [deposit(0, "1.00", "a"), deposit(1, "6.66", "a"), deposit(2, "2.00", "a")]
    applier.apply(first, positions(first))  # careful path: a failure, then a parked record
    # fast path diverts a's records, then fails on b's and is applied again carefully
    second = [deposit(3, "3.00", "a"), deposit(4, "1.00", "b"), deposit(5, "6.66", "b")]
    outcome = applier.apply(second, positions(second))
    assert outcome.dead_lettered == 2
    assert listener.seen == ["handler", "parked", "parked", "handler"]
    assert len(sink.sent) == len(listener.seen)
    assert rows(engine, projection) == {"a": (100, 1), "b": (100, 1)}


def test_a_handler_reading_a_malformed_header_dead_letters_the_record_at_decode(
    engine: Engine,
) -> None:
    class ByTime(AccountBalances):
        policy = DeadLetterPolicy.SKIP
        retries = 3

        @on(MoneyDeposited)
        def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
            assert ctx.meta.time.year == 2026
            super()._deposited(event, ctx)

    projection = ByTime(name=f"t{uuid.uuid4().hex[:6]}", topics=[TOPIC])
    ensure_schema(engine, projection)
    sink, listener = ListSink(), DeadLetters()
    hook = DeadLetterHandler(
        projection.name,
        projection.version,
        DeadLetterPolicy.SKIP,
        lambda: sink,
        SqlParkingLot(projection.name, projection.version),
    )
    applier = BatchApplier(projection, engine, CODEC, hook, listener, sleep=lambda s: None)
    bad = deposit(1, "2.00")
    bad._headers = with_header(bad.headers(), "ce_time", b"noon")
    batch = [deposit(0, "1.00"), bad]
    outcome = applier.apply(batch, positions(batch))
    assert (outcome.applied, outcome.dead_lettered) == (1, 1)
    assert listener.seen == ["decode"]
    assert rows(engine, projection) == {"a": (100, 1)}


# --- read-model database errors ----------------------------------------------------------
class DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "transient", "permanent"),
    [
        (OperationalError("x", {}, DriverError("database is locked")), True, False),
        (OperationalError("x", {}, DriverError("server closed the connection")), True, False),
        (OperationalError("x", {}, DriverError("no such table: accounts")), False, True),
        (OperationalError("x", {}, DriverError("near 'SELEC': syntax error")), False, True),
        (OperationalError("x", {}, DriverError("could not serialize", "40001")), True, False),
        (OperationalError("x", {}, DriverError("deadlock detected", "40P01")), True, False),
        (OperationalError("x", {}, DriverError("terminating connection", "57P01")), True, False),
        (ProgrammingError("x", {}, DriverError("relation does not exist", "42P01")), False, True),
        (ProgrammingError("x", {}, DriverError("permission denied", "42501")), False, True),
        (IntegrityError("x", {}, DriverError("duplicate key", "23505")), False, False),
        (ValueError("not a database error"), False, False),
    ],
)
def test_database_errors_are_classified(
    error: BaseException, transient: bool, permanent: bool
) -> None:
    assert (is_transient_db_error(error), is_permanent_db_error(error)) == (transient, permanent)


def test_a_lost_connection_is_transient_whatever_the_error_class() -> None:
    error = ProgrammingError("x", {}, DriverError("closed"), connection_invalidated=True)
    assert is_transient_db_error(error) and not is_permanent_db_error(error)


@pytest.mark.parametrize("cls", [AccountBalances, AccountBalancesPerEvent])
def test_a_dropped_table_is_raised_as_a_permanent_error_not_dead_lettered(
    engine: Engine, cls: type[AccountBalances]
) -> None:
    projection = cls(name=f"d{uuid.uuid4().hex[:6]}", topics=[TOPIC])
    ensure_schema(engine, projection)
    sink, listener = ListSink(), DeadLetters()
    hook = DeadLetterHandler(
        projection.name,
        projection.version,
        DeadLetterPolicy.SKIP,
        lambda: sink,
        SqlParkingLot(projection.name, projection.version),
    )
    applier = BatchApplier(projection, engine, CODEC, hook, listener, sleep=lambda s: None)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{projection.accounts.name}"')
    batch = [record(0, AccountOpened(owner="Ada")), deposit(1, "1.00")]
    with pytest.raises(OperationalError, match="no such table") as caught:
        applier.apply(batch, positions(batch))
    assert is_permanent_db_error(caught.value)
    assert (sink.sent, listener.seen) == ([], [])


class AlwaysLocked:
    """An applier whose database stays locked: every batch fails transiently."""

    def __init__(self) -> None:
        self.calls = 0

    def _locked(self) -> OperationalError:
        self.calls += 1
        return OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    def apply(self, messages: Any, positions: Any) -> BatchOutcome:
        raise self._locked()

    def advance(self, positions: Any) -> BatchOutcome:
        raise self._locked()


def test_a_database_that_stays_unavailable_fails_the_runner_after_max_db_outage_s(
    tmp_path: Path,
) -> None:
    kafka_settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")  # never contacted
    projection = AccountBalances(name="locked", topics=["t"])
    with ProjectionRunner(
        projection, kafka_settings, str(tmp_path / "rm.db"), max_db_outage_s=0.5
    ) as runner:
        locked = AlwaysLocked()
        runner._applier = locked  # type: ignore[assignment]  # a fake database, nothing else
        with pytest.raises(ProjectionError, match=r"'locked' v1 gave up .*database is locked"):
            runner._apply_with_retry([object()], {}, RunStats(), threading.Event(), None)
        assert locked.calls >= 2  # it did retry before giving up


# --- dispatch on the decoded type (issue 12, defect 4) ------------------------------------
def skip_hook(projection: Projection, sink: ListSink | None = None) -> DeadLetterHandler:
    """The SKIP hook of ``projection``, writing to ``sink`` (a fresh list by default)."""
    sink = sink or ListSink()
    return DeadLetterHandler(
        projection.name,
        projection.version,
        DeadLetterPolicy.SKIP,
        lambda: sink,
        SqlParkingLot(projection.name, projection.version),
    )


class Ledger(Projection):
    """Keeps a handler for the old type and one for the type it is upcast to."""

    name = "ledger"
    version = 1
    policy = DeadLetterPolicy.SKIP
    retries = 0
    seen: list[str]

    @on(FundsAdded)
    def _funds_added(self, event: Event, ctx: Context) -> None:
        self.seen.append(f"FundsAdded handler got {type(event).__name__}")

    @on(Credited)
    def _credited(self, event: Event, ctx: Context) -> None:
        if isinstance(event, Credited) and event.amount == Decimal("6.66"):
            raise ValueError("no devil's credits")
        self.seen.append(f"Credited handler got {type(event).__name__}")


@pytest.mark.parametrize("path", ["fast", "careful"])
def test_a_record_upcast_to_another_type_reaches_the_handler_of_the_decoded_type(
    engine: Engine, tmp_path: Path, path: str
) -> None:
    write_schema_files([FundsAdded], tmp_path)
    upcasters = Upcasters()

    @upcasters.upcaster("test.ledger.FundsAdded", from_version=1, to_type="test.ledger.Credited")
    def funds_added_is_credited(data: Datum) -> Datum:
        return {"amount": Decimal(data["amount_cents"]).scaleb(-2)}

    old = EventCodec.for_events([FundsAdded])
    codec = EventCodec.for_events([Credited], tmp_path, upcasters)
    projection = Ledger(name=f"l{uuid.uuid4().hex[:6]}", topics=[TOPIC])
    projection.seen = []
    ensure_schema(engine, projection)
    applier = BatchApplier(projection, engine, codec, skip_hook(projection), NullListener())
    records = [record(0, FundsAdded(amount_cents=250), "x", old)]
    if path == "careful":  # a failing record sends the batch down the careful path
        records.append(record(1, Credited(amount=Decimal("6.66")), "y", codec))
    outcome = applier.apply(records, positions(records))
    assert (outcome.applied, outcome.dead_lettered) == (1, len(records) - 1)
    assert set(projection.seen) == {"Credited handler got Credited"}


# --- database errors that the record alone triggers (issue 12, defect 5) -----------------
class Picky(AccountBalances):
    """Runs SQL on the deposit's amount that the database refuses for some amounts."""

    policy = DeadLetterPolicy.SKIP
    retries = 1
    SQL = ""
    ARGUMENT: object = None

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        if event.amount == Decimal("6.66"):
            ctx.execute(text(self.SQL), {"v": self.ARGUMENT})
        super()._deposited(event, ctx)


@pytest.mark.parametrize(
    ("sql", "argument", "message"),
    [
        ("SELECT json_extract(:v, '$.a')", "{not json", "malformed JSON"),
        ("SELECT abs(:v)", -(2**63), "integer overflow"),
    ],
)
def test_a_database_error_only_the_record_triggers_follows_the_policy(
    engine: Engine, sql: str, argument: object, message: str
) -> None:
    class ThisPicky(Picky):
        SQL, ARGUMENT = sql, argument

    projection = ThisPicky(name=f"p{uuid.uuid4().hex[:6]}", topics=[TOPIC])
    ensure_schema(engine, projection)
    sink, listener = ListSink(), DeadLetters()
    hook = skip_hook(projection, sink)
    applier = BatchApplier(projection, engine, CODEC, hook, listener, sleep=lambda s: None)
    batch = [deposit(0, "1.00"), deposit(1, "6.66"), deposit(2, "2.00")]
    outcome = applier.apply(batch, positions(batch))  # raised OperationalError before
    assert (outcome.applied, outcome.dead_lettered) == (2, 1)
    assert listener.seen == ["handler"]
    assert message in dict(sink.sent[0][2])["dlq_exception_message"].decode()
    assert rows(engine, projection) == {"a": (300, 2)}


@pytest.mark.parametrize(
    ("sql", "transient", "permanent"),
    [
        ("SELECT json_extract('{x', '$.a')", False, False),
        ("SELECT abs(-9223372036854775808)", False, False),
        ("SELECT * FROM no_such_table", False, True),
        ("SELEC 1", False, True),
    ],
)
def test_sqlite_errors_are_classified_by_their_error_code(
    engine: Engine, sql: str, transient: bool, permanent: bool
) -> None:
    with engine.connect() as conn, pytest.raises(OperationalError) as caught:
        conn.exec_driver_sql(sql)
    error = caught.value
    assert (is_transient_db_error(error), is_permanent_db_error(error)) == (transient, permanent)
