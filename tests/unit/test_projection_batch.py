"""Applying batches to a real SQLite database, with record objects shaped like
confluent-kafka's ``Message`` (the applier only calls its accessors)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import Event, EventMetadata
from eventsource.errors import ProjectionStoppedError
from eventsource.projection import Context, Failure, FailureAction, NullListener, RawRecord, on
from eventsource.projection.batch import BatchApplier
from eventsource.projection.checkpoints import read_checkpoints
from eventsource.projection.store import create_read_model_engine, ensure_schema
from eventsource.projection.types import StopOnFailure
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from examples.bank.projections import AccountBalances

CODEC = EventCodec.for_events(Account.event_types())
TOPIC = "bank.account.events"


class Record:
    """A consumed record: what ``Consumer.consume`` returns, minus the C extension."""

    def __init__(
        self,
        offset: int,
        aggregate_id: str,
        version: int,
        event: Event | None,
        value: bytes | None = None,
    ) -> None:
        self._offset = offset
        self._key = aggregate_id.encode()
        kind = event.event_type() if event else "bank.account.MoneyDeposited"
        meta = EventMetadata(
            str(uuid.uuid4()), kind, "bank.account", aggregate_id, version, datetime.now(UTC)
        )
        self._headers = build_headers(meta, source="/test")
        self._value = CODEC.encode(event) if event is not None else value

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def deposits(start: int, n: int, aggregate_id: str = "a") -> list[Record]:
    return [
        Record(start + i, aggregate_id, start + i + 1, MoneyDeposited(amount=Decimal("1.00")))
        for i in range(n)
    ]


class Picky(AccountBalances):
    """Refuses deposits of exactly 6.66, after writing (the write must vanish)."""

    retries = 1
    retry_backoff_s = 0.0

    @on(MoneyDeposited)
    def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
        super()._deposited(event, ctx)
        ctx.flush()
        if event.amount == Decimal("6.66"):
            raise ValueError("no devil's deposits")


class SkipAll:
    """A failure hook that skips every poison record and remembers it."""

    def __init__(self) -> None:
        self.failures: list[Failure] = []
        self.commits = 0

    def intercept(self, record: RawRecord, meta: EventMetadata, connection: Connection) -> bool:
        return False

    def on_failure(self, failure: Failure, connection: Connection) -> FailureAction:
        self.failures.append(failure)
        return FailureAction.SKIP

    def before_commit(self, connection: Connection) -> None:
        self.commits += 1

    def after_rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_read_model_engine(tmp_path / "rm.db")
    yield engine
    engine.dispose()


def balances(engine: Engine, projection: AccountBalances) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        return {
            r.account_id: (r.balance_cents, r.events)
            for r in conn.execute(select(projection.accounts))
        }


def checkpoint(engine: Engine, projection: AccountBalances) -> int | None:
    with engine.connect() as conn:
        return read_checkpoints(conn, projection.name, projection.version).get((TOPIC, 0))


def applier(engine: Engine, projection: AccountBalances, hook: object = None) -> BatchApplier:
    ensure_schema(engine, projection)
    return BatchApplier(
        projection, engine, CODEC, hook or StopOnFailure(), NullListener(), sleep=lambda s: None
    )  # type: ignore[arg-type]


def test_a_batch_stores_changes_and_checkpoint_even_without_prepared_rows(engine: Engine) -> None:
    projection = AccountBalances()
    outcome = applier(engine, projection).apply(
        [Record(0, "a", 1, AccountOpened(owner="ann")), *deposits(1, 4)], {}
    )
    assert (outcome.applied, outcome.next_offsets) == (5, {(TOPIC, 0): 5})
    assert balances(engine, projection) == {"a": (400, 5)}
    assert checkpoint(engine, projection) == 5


def test_records_below_the_stored_checkpoint_are_skipped_as_duplicates(engine: Engine) -> None:
    projection = AccountBalances()
    apply = applier(engine, projection)
    apply.apply(deposits(0, 5), {})
    outcome = apply.apply(deposits(3, 4), {})  # offsets 3..6: 3 and 4 were applied already
    assert (outcome.applied, outcome.duplicates) == (2, 2)
    assert balances(engine, projection) == {"a": (700, 7)}


def test_a_consumer_position_past_transaction_markers_becomes_the_checkpoint(
    engine: Engine,
) -> None:
    projection = AccountBalances()
    applier(engine, projection).apply(deposits(0, 3), {(TOPIC, 0): 4})  # marker at offset 3
    assert checkpoint(engine, projection) == 4


def test_stop_commits_the_records_before_a_failing_handler_and_stops_at_it(engine: Engine) -> None:
    projection = Picky()
    batch = [
        *deposits(0, 2),
        Record(2, "a", 3, MoneyDeposited(amount=Decimal("6.66"))),
        *deposits(3, 2),
    ]
    with pytest.raises(
        ProjectionStoppedError, match=r"bank.account.events\[0\]@2 .*2 attempt.*no devil"
    ):
        applier(engine, projection).apply(batch, {})
    assert balances(engine, projection) == {"a": (200, 2)}  # the failing write vanished
    assert checkpoint(engine, projection) == 2


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        (b"\x00\x00\x00\x00\x07garbage", "schema"),
        (b"nonsense", "decode"),
        (b"\xc3\x01" + b"\x00" * 8, "schema"),
    ],
)
def test_undecodable_payloads_reach_the_hook_with_their_stage(
    engine: Engine, value: bytes, stage: str
) -> None:
    projection = AccountBalances()
    hook = SkipAll()
    batch = [*deposits(0, 2), Record(2, "a", 3, None, value=value), *deposits(3, 2)]
    outcome = applier(engine, projection, hook).apply(batch, {})
    assert (outcome.applied, outcome.dead_lettered) == (4, 1)
    assert [(f.stage, f.record.offset, f.record.value) for f in hook.failures] == [
        (stage, 2, value)
    ]
    assert hook.commits >= 1
    assert checkpoint(engine, projection) == 5
    assert balances(engine, projection) == {"a": (400, 4)}


class OnPartition(Record):
    def __init__(self, partition: int, offset: int, aggregate_id: str) -> None:
        super().__init__(offset, aggregate_id, offset + 1, MoneyDeposited(amount=Decimal("1.00")))
        self._partition = partition

    def partition(self) -> int:
        return self._partition


def test_interleaved_partitions_each_skip_below_their_floor_and_advance_to_their_last(
    engine: Engine,
) -> None:
    projection = AccountBalances()
    apply = applier(engine, projection)
    apply.apply([OnPartition(1, o, "b") for o in range(3)], {})  # partition 1 stored at 3
    runs = [(0, 0), (0, 1), (1, 2), (1, 3), (0, 2), (1, 4), (2, 0), (0, 3), (1, 5)]
    outcome = apply.apply([OnPartition(p, o, f"acc{p}") for p, o in runs], {})
    assert (outcome.applied, outcome.duplicates) == (8, 1)  # 1@2 was applied before
    assert outcome.next_offsets == {(TOPIC, 0): 4, (TOPIC, 1): 6, (TOPIC, 2): 1}
    assert balances(engine, projection) == {
        "b": (300, 3),
        "acc0": (400, 4),
        "acc1": (300, 3),
        "acc2": (100, 1),
    }
