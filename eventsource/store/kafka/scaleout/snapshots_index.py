"""A version index whose states live in a local SQLite file: memory stays bounded.

:class:`SnapshotIndex` has the interface of :class:`~eventsource.store.kafka.index.VersionIndex`
(the partition writer cannot tell them apart) but keeps at most ``cache_size`` folded
aggregates in memory; every other one is a row ``(aggregate_id, version, snapshot)`` of
``<directory>/<topic>-<partition>.sqlite3``. The file also records the events offset its
rows are complete up to and their snapshot version, so a writer that takes the partition
back later catches up from there.

Writes to SQLite go into one open SQLite transaction that :meth:`flush` commits together
with the events offset, so after a crash the file is always the fold of a prefix of the
partition (the rows never get ahead of the recorded offset).
"""

from __future__ import annotations

import collections
import copy
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar, cast

from eventsource.domain import Aggregate, Event
from eventsource.store.kafka.index import VersionIndex, scratch_copy
from eventsource.store.kafka.scaleout.snapshots import decode_snapshot, encode_snapshot

__all__ = ["SnapshotIndex", "version_of"]

A = TypeVar("A", bound=Aggregate)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS snapshots "
    "(id TEXT PRIMARY KEY, version INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_UPSERT = "INSERT OR REPLACE INTO snapshots (id, version, data) VALUES (?, ?, ?)"


def version_of(data: bytes) -> int:
    """The aggregate version in an encoded snapshot (``{"sv":N,"v":M,...``), unparsed."""
    start = data.index(b',"v":') + 5
    return int(data[start : data.index(b",", start)])


class SnapshotIndex(VersionIndex[A]):
    """Folded aggregates of one partition: a bounded LRU cache over a SQLite file.

    It overrides every public method of :class:`VersionIndex` (a unit test checks it stays
    so): the base class's in-memory ``_states`` stays empty.
    """

    def __init__(self, aggregate_cls: type[A], path: Path, *, cache_size: int = 10_000) -> None:
        super().__init__(aggregate_cls)
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.path = path
        self.cache_size = cache_size
        self._lock = threading.RLock()  # type: ignore[assignment]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-16000"):
            self._db.execute(f"PRAGMA {pragma}")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._cache: collections.OrderedDict[str, A] = collections.OrderedDict()
        self._dirty: set[str] = set()
        self._in_tx = False

    # -- the VersionIndex interface ---------------------------------------------------
    def version(self, aggregate_id: str) -> int:
        with self._lock:
            state = self._cache.get(aggregate_id)
            if state is not None:
                return state.version
            row = self._db.execute(
                "SELECT version FROM snapshots WHERE id = ?", (aggregate_id,)
            ).fetchone()
            return 0 if row is None else int(row[0])

    def versions(self, aggregate_ids: Iterable[str]) -> dict[str, int]:
        with self._lock:
            return {aggregate_id: self.version(aggregate_id) for aggregate_id in aggregate_ids}

    def snapshot(self, aggregate_id: str) -> A | None:
        with self._lock:
            state = self._get(aggregate_id)
            return None if state is None else copy.deepcopy(state)

    def scratch(self, aggregate_id: str) -> A:
        with self._lock:
            state = self._get(aggregate_id)
            if state is None:
                return self.aggregate_cls(aggregate_id)
            return cast("A", scratch_copy(state))

    def apply(self, aggregate_id: str, events: Iterable[Event]) -> int:
        with self._lock:
            state = self._get(aggregate_id) or self.aggregate_cls(aggregate_id)
            for event in events:
                state.apply_event(event)
            self._put(aggregate_id, state)
            return state.version

    def scratch_many(self, aggregate_ids: Iterable[str]) -> dict[str, A]:
        with self._lock:
            copies: dict[str, A] = {}
            for aggregate_id in aggregate_ids:
                if aggregate_id not in copies:
                    copies[aggregate_id] = self.scratch(aggregate_id)
            return copies

    def install(self, states: Mapping[str, A]) -> None:
        with self._lock:
            for aggregate_id, state in states.items():
                self._put(aggregate_id, state)

    def __len__(self) -> int:
        with self._lock:
            self._spill()
            return int(self._db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0])

    # -- snapshots --------------------------------------------------------------------
    def local_state(self) -> tuple[int | None, int | None]:
        """``(snapshot_version, events_offset)`` the file was last flushed at, if any."""
        with self._lock:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            return rows.get("snapshot_version"), rows.get("offset")

    def flush(self, offset: int) -> None:
        """Commit every change so far as the fold of the partition up to ``offset``."""
        with self._lock:
            self._spill()
            self._begin()
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("offset", offset), ("snapshot_version", self.aggregate_cls.snapshot_version)],
            )
            self._db.execute("COMMIT")
            self._in_tx = False

    def reset(self) -> None:
        """Forget everything (the file's rows and meta too): a restore starts over."""
        with self._lock:
            self._cache.clear()
            self._dirty.clear()
            self._begin()
            self._db.execute("DELETE FROM snapshots")
            self._db.execute("DELETE FROM meta")
            self._db.execute("COMMIT")
            self._in_tx = False

    def put_encoded(self, rows: Sequence[tuple[str, bytes]]) -> None:
        """Store encoded snapshots as they are (a restore from the snapshot topic)."""
        with self._lock:
            self._begin()
            self._db.executemany(_UPSERT, [(i, version_of(d), d) for i, d in rows])

    def delete(self, aggregate_ids: Sequence[str]) -> None:
        with self._lock:
            self._begin()
            self._db.executemany(
                "DELETE FROM snapshots WHERE id = ?", [(i,) for i in aggregate_ids]
            )

    def encoded(self, chunk: int = 5000) -> Iterator[list[tuple[str, bytes]]]:
        """Every stored snapshot, in chunks (call after :meth:`flush`)."""
        last = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, data FROM snapshots WHERE id > ? ORDER BY id LIMIT ?",
                    (last, chunk),
                ).fetchall()
            if not rows:
                return
            yield [(str(i), bytes(d)) for i, d in rows]
            last = rows[-1][0]

    def close(self) -> None:
        with self._lock:
            if self._in_tx:
                self._db.execute("ROLLBACK")  # not flushed: not known to match an offset
                self._in_tx = False
            self._db.close()

    # -- internals --------------------------------------------------------------------
    def _get(self, aggregate_id: str) -> A | None:
        state = self._cache.get(aggregate_id)
        if state is not None:
            self._cache.move_to_end(aggregate_id)
            return state
        row = self._db.execute(
            "SELECT data FROM snapshots WHERE id = ?", (aggregate_id,)
        ).fetchone()
        if row is None:
            return None
        state = decode_snapshot(self.aggregate_cls, aggregate_id, bytes(row[0]))
        self._cache[aggregate_id] = state
        self._evict()
        return state

    def _put(self, aggregate_id: str, state: A) -> None:
        self._cache[aggregate_id] = state
        self._cache.move_to_end(aggregate_id)
        self._dirty.add(aggregate_id)
        self._evict()

    def _evict(self) -> None:
        if len(self._cache) <= self.cache_size:
            return
        self._spill()
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _spill(self) -> None:
        """Write dirty states into the open SQLite transaction (committed by flush)."""
        if not self._dirty:
            return
        self._begin()
        cache = self._cache
        self._db.executemany(
            _UPSERT,
            [(i, cache[i].version, encode_snapshot(cache[i])) for i in self._dirty],
        )
        self._dirty.clear()

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    # Iterable of ids for tests and diagnostics.
    def ids(self) -> list[str]:
        with self._lock:
            self._spill()
            return [str(r[0]) for r in self._db.execute("SELECT id FROM snapshots ORDER BY id")]
