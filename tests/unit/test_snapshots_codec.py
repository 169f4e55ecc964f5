"""Snapshots without a broker: the aggregate hooks, the codec, and the SQLite-backed index."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from eventsource.domain import Aggregate, Event, apply
from eventsource.errors import DecodeError, EncodeError
from eventsource.store.kafka.scaleout.snapshots import (
    SnapshotMismatch,
    decode_snapshot,
    encode_meta,
    encode_snapshot,
    meta_version,
    snapshot_prefix,
    snapshots_topic,
)
from eventsource.store.kafka.scaleout.snapshots_index import SnapshotIndex, version_of
from examples.bank.domain import Account, AccountOpened, MoneyDeposited


def opened(aggregate_id: str, *amounts: str) -> Account:
    events: list[Event] = [AccountOpened(owner="ada")]
    events += [MoneyDeposited(amount=Decimal(a)) for a in amounts]
    return Account.rehydrate(aggregate_id, events)


class Noted(Event):
    __namespace__ = "test.snap"
    text: str


class Rich(Aggregate):
    aggregate_type = "test.rich"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        self.day = date(2026, 1, 2)
        self.ref = uuid.UUID(int=7)
        self.pair = (1, Decimal("2.50"))
        self.tags = {"a", "b"}
        self.nested = {"k": [Decimal("1.1"), None, True]}
        self.notes: list[str] = []

    @apply
    def _noted(self, event: Noted) -> None:
        self.notes.append(event.text)


class Handle:
    """Not JSON, not tagged: a snapshot cannot hold it."""


class Opaque(Aggregate):
    aggregate_type = "test.opaque"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.handle = Handle()

    @apply
    def _noted(self, event: Noted) -> None:
        pass


class AccountV2(Account):
    aggregate_type = "bank.account"
    snapshot_version = 2


def test_snapshot_state_is_the_public_attributes_without_id_version_or_pending_events() -> None:
    account = opened("a-1", "5.00")
    account.deposit(Decimal("1.00"))  # pending, not committed
    assert account.snapshot_state() == {
        "owner": "ada",
        "balance": Decimal("6.00"),
        "closed": False,
    }


def test_restore_state_gives_an_equal_aggregate_at_the_version_with_nothing_pending() -> None:
    account = opened("a-1", "5.00", "2.25")
    restored = Account.restore_state("a-1", account.version, account.snapshot_state())
    assert (restored.id, restored.version, restored.balance) == ("a-1", 3, Decimal("7.25"))
    assert restored.pending_events == ()
    restored.deposit(Decimal("1.00"))
    assert restored.balance == Decimal("8.25")


def test_a_snapshot_round_trips_decimals_dates_uuids_tuples_and_sets() -> None:
    rich = Rich.rehydrate("r-1", [Noted(text="x"), Noted(text="y")])
    back = decode_snapshot(Rich, "r-1", encode_snapshot(rich))
    assert back.snapshot_state() == rich.snapshot_state()
    assert back.version == 2
    assert isinstance(back.pair, tuple) and isinstance(back.tags, set)


def test_a_snapshot_starts_with_its_snapshot_version_and_holds_the_aggregate_version() -> None:
    data = encode_snapshot(opened("a-1", "1.00"))
    assert data.startswith(snapshot_prefix(1))
    assert version_of(data) == 2


def test_a_snapshot_of_another_snapshot_version_is_refused_as_a_mismatch() -> None:
    data = encode_snapshot(opened("a-1"))
    with pytest.raises(SnapshotMismatch, match="snapshot version 2"):
        decode_snapshot(AccountV2, "a-1", data)


def test_state_a_snapshot_cannot_hold_fails_naming_the_attribute_and_the_fix() -> None:
    with pytest.raises(EncodeError, match=r"'handle' holds a Handle.*override snapshot_state"):
        encode_snapshot(Opaque.rehydrate("o-1", [Noted(text="x")]))


def test_a_dict_with_non_string_keys_cannot_be_snapshotted() -> None:
    rich = Rich("r-1")
    rich.nested = {1: "one"}  # type: ignore[dict-item]
    with pytest.raises(EncodeError, match="non-string keys"):
        encode_snapshot(rich)


@pytest.mark.parametrize(
    "data",
    [b'{"sv":1,"v":2,"s":[1]}', b'{"sv":1,"v":0,"s":{}}', b'{"sv":1,"v":2,"s":{', b'{"sv":1,'],
)
def test_a_corrupt_snapshot_is_a_decode_error_naming_the_aggregate(data: bytes) -> None:
    with pytest.raises(DecodeError, match="'a-1'"):
        decode_snapshot(Account, "a-1", data)


def test_the_completion_record_names_its_snapshot_version_and_garbage_names_none() -> None:
    assert meta_version(encode_meta(3)) == 3
    assert meta_version(b"not json") is None
    assert meta_version(None) is None
    assert meta_version(b"[1]") is None
    assert snapshots_topic("bank.account", "dev.") == "dev.bank.account.snapshots"


# -- the SQLite-backed index ---------------------------------------------------------------


def test_the_index_keeps_at_most_cache_size_aggregates_in_memory_and_the_rest_in_sqlite(
    tmp_path: Path,
) -> None:
    index = SnapshotIndex(Account, tmp_path / "p0.sqlite3", cache_size=3)
    for n in range(10):
        index.apply(f"a-{n}", [AccountOpened(owner=str(n)), MoneyDeposited(amount=Decimal(n + 1))])
    assert len(index._cache) <= 3
    assert len(index) == 10
    assert [index.version(f"a-{n}") for n in range(10)] == [2] * 10
    loaded = index.snapshot("a-0")
    assert loaded is not None and loaded.balance == Decimal(1) and loaded.owner == "0"
    assert index.version("unknown") == 0 and index.snapshot("unknown") is None
    index.close()


def test_a_loaded_aggregate_is_a_copy_the_caller_cannot_use_to_change_the_index(
    tmp_path: Path,
) -> None:
    index = SnapshotIndex(Account, tmp_path / "p0.sqlite3")
    index.apply("a-1", [AccountOpened(owner="ada")])
    copy = index.snapshot("a-1")
    assert copy is not None
    copy.balance = Decimal(1000)
    assert index.snapshot("a-1").balance == Decimal(0)  # type: ignore[union-attr]
    index.close()


def test_only_flushed_changes_survive_a_reopen_together_with_their_offset(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite3"
    index = SnapshotIndex(Account, path, cache_size=2)
    index.apply("a-1", [AccountOpened(owner="ada")])
    index.flush(5)
    for n in range(2, 6):  # spills to SQLite, but is not flushed
        index.apply(f"a-{n}", [AccountOpened(owner="x")])
    index.apply("a-1", [MoneyDeposited(amount=Decimal(3))])
    index.close()  # a crash before flush

    reopened = SnapshotIndex(Account, path)
    assert reopened.local_state() == (1, 5)
    assert reopened.ids() == ["a-1"]
    assert reopened.version("a-1") == 1
    reopened.close()


def test_scratch_copies_change_nothing_until_installed(tmp_path: Path) -> None:
    index = SnapshotIndex(Account, tmp_path / "p0.sqlite3")
    index.apply("a-1", [AccountOpened(owner="ada")])
    states = index.scratch_many(["a-1", "a-2", "a-1"])
    states["a-1"].apply_event(MoneyDeposited(amount=Decimal(2)))
    states["a-2"].apply_event(AccountOpened(owner="bob"))
    assert index.version("a-1") == 1 and index.version("a-2") == 0
    index.install(states)
    index.flush(7)
    assert index.version("a-1") == 2 and index.version("a-2") == 1
    assert index.snapshot("a-1").balance == Decimal(2)  # type: ignore[union-attr]
    assert index.local_state() == (Account.snapshot_version, 7)
    index.close()


def test_encoded_snapshots_stored_as_they_are_load_and_come_back_in_chunks(tmp_path: Path) -> None:
    index = SnapshotIndex(Account, tmp_path / "p0.sqlite3")
    rows = [(f"a-{n:02}", encode_snapshot(opened(f"a-{n:02}", str(n + 1)))) for n in range(7)]
    index.put_encoded(rows)
    index.delete(["a-03"])
    index.flush(100)
    assert index.snapshot("a-05").balance == Decimal(6)  # type: ignore[union-attr]
    chunks = list(index.encoded(chunk=3))
    assert [len(c) for c in chunks] == [3, 3]
    assert [i for c in chunks for i, _ in c] == [r[0] for r in rows if r[0] != "a-03"]
    index.reset()
    assert len(index) == 0 and index.local_state() == (None, None)
    index.close()


def test_a_cache_of_no_aggregates_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_size must be >= 1"):
        SnapshotIndex(Account, tmp_path / "p0.sqlite3", cache_size=0)


def test_the_sqlite_index_overrides_every_public_method_of_the_in_memory_index() -> None:
    from eventsource.store.kafka.index import VersionIndex

    public = {n for n in vars(VersionIndex) if not n.startswith("_") or n == "__len__"}
    assert public - set(vars(SnapshotIndex)) == set()


def test_versions_of_several_aggregates_come_from_sqlite_and_cache_alike(tmp_path: Path) -> None:
    index = SnapshotIndex(Account, tmp_path / "p0.sqlite3", cache_size=1)
    index.apply("a-1", [AccountOpened(owner="ada"), MoneyDeposited(amount=Decimal(1))])
    index.apply("a-2", [AccountOpened(owner="bob")])
    assert index.versions(["a-1", "a-2", "a-3"]) == {"a-1": 2, "a-2": 1, "a-3": 0}
    index.close()
