# ruff: noqa: S608  (SQL built from this file's constants and generated table names only)
"""The plain loops ``benchmarks/replay.py`` measures the projection runner against.

Every loop reads the whole topic (read_committed, assigned partitions, no group) with
``consume(num_messages=5000)``, decodes with bare fastavro and writes a table
``accounts``-shaped like ``examples.bank.projections.AccountBalances``, one database
transaction per consume batch, with the cyclic garbage collector paused from each consume
until its batch is written and released (as the runner does). The clock starts at the
first record received and stops when the last record's transaction committed (the consume
that finds nothing more is not counted); CPU seconds are taken at the same two points.

- ``raw``: one upsert executed per event through ``sqlite3`` (the per-event loop).
- ``raw+fold``: the batch folded per key in a dict (sum of amounts, count, last version,
  last owner set, closed), one ``executemany`` per batch through ``sqlite3``: the strongest
  plain loop on SQLite.
- ``pg+executemany``: the same fold, psycopg 3's ``executemany`` (pipelined by psycopg).
- ``pg+copy``: the same fold, ``COPY`` into a temporary table, one ``INSERT ... SELECT ...
  ON CONFLICT`` per batch.

``checksum`` is computed the same way for every reader's final table, so the benchmark can
check that each produced the same read model.
"""

from __future__ import annotations

import gc
import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eventsource.codec import SchemaCatalog, avro_schema
from eventsource.kafka.config import KafkaSettings

COLUMNS = "account_id, owner, balance_cents, events, version, closed"
CREATE = (
    "CREATE TABLE {t} (account_id VARCHAR(64) PRIMARY KEY, owner VARCHAR(200), "
    "balance_cents BIGINT NOT NULL, events INTEGER NOT NULL, version INTEGER NOT NULL, "
    "closed BOOLEAN NOT NULL)"
)
ON_CONFLICT = (
    " ON CONFLICT (account_id) DO UPDATE SET "
    "owner = coalesce(excluded.owner, {t}.owner), "
    "balance_cents = {t}.balance_cents + excluded.balance_cents, "
    "events = {t}.events + excluded.events, version = excluded.version, "
    "closed = excluded.closed"
)
SQLITE_UPSERT = f"INSERT INTO accounts ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)" + (
    ON_CONFLICT.format(t="accounts")
)

#: one decoded event: (account_id, owner or None, delta in cents, version, closed)
Row = tuple[str, str | None, int, int, bool]


def checksum(rows: Iterable[Sequence[Any]]) -> str:
    """A digest of a final table: rows (account_id, owner, balance, events, version, closed)
    sorted here (collations differ between databases); booleans normalised (SQLite stores
    0/1)."""
    digest = hashlib.sha256()
    count = 0
    for a, o, b, e, v, c in sorted(rows):
        digest.update(f"{a}|{o}|{int(b)}|{int(e)}|{int(v)}|{bool(c)}\n".encode())
        count += 1
    return f"{count}:{digest.hexdigest()[:16]}"


def _decoder() -> Callable[[Any], Row]:
    from examples.bank.domain import Account

    catalog = SchemaCatalog()  # only to learn the fingerprints; decoding is plain fastavro
    schemas = {}
    for event_type in Account.event_types():
        catalog.register(event_type)
        schemas[catalog.fingerprint(event_type)] = fastavro.parse_schema(avro_schema(event_type))
    reader = fastavro.schemaless_reader

    def decode(message: Any) -> Row:
        headers = dict(message.headers())
        value = message.value()
        datum = reader(io.BytesIO(value[10:]), schemas[value[2:10]], None)
        name = headers["ce_type"].decode().rsplit(".", 1)[1]
        delta = 0
        if name == "MoneyDeposited":
            delta = int(Decimal(datum["amount"]) * 100)
        elif name == "MoneyWithdrawn":
            delta = -int(Decimal(datum["amount"]) * 100)
        return (
            headers["ce_subject"].decode(),
            datum.get("owner"),
            delta,
            int(headers["ce_sequence"]),
            name == "AccountClosed",
        )

    return decode


def fold(rows: Iterable[Row]) -> list[tuple[str, str | None, int, int, int, bool]]:
    """One row per account: owner last set, summed delta, event count, last version/closed."""
    acc: dict[str, list[Any]] = {}
    for key, owner, delta, version, closed in rows:
        slot = acc.get(key)
        if slot is None:
            acc[key] = [owner, delta, 1, version, closed]
        else:
            if owner is not None:
                slot[0] = owner
            slot[1] += delta
            slot[2] += 1
            slot[3] = version
            slot[4] = closed
    return [(k, o, d, n, v, c) for k, (o, d, n, v, c) in acc.items()]


def consume_all(
    settings: KafkaSettings, topic: str, total: int, write: Callable[[list[Any]], None]
) -> dict[str, float]:
    consumer = Consumer(settings.consumer_config(f"bench.raw.{uuid.uuid4().hex}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = 0
    started = 0.0
    cpu_started = time.process_time()
    while seen < total:
        # the collector paused from the consume until the batch is written and released,
        # as the runner does: its records are never traversed nor promoted to old generations
        gc.disable()
        try:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            write(batch)
            seen += len(batch)
            del batch
        finally:
            gc.enable()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    consumer.close()
    return {"events": seen, "seconds": seconds, "cpu_seconds": cpu}


def sqlite_reader(settings: KafkaSettings, topic: str, total: int, db: str, folded: bool) -> Any:
    import sqlite3

    decode = _decoder()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(CREATE.format(t="accounts"))

    def per_event(batch: list[Any]) -> None:
        conn.execute("BEGIN")
        for message in batch:
            key, owner, delta, version, closed = decode(message)
            conn.execute(SQLITE_UPSERT, (key, owner, delta, 1, version, closed))
        conn.execute("COMMIT")

    def folding(batch: list[Any]) -> None:
        conn.execute("BEGIN")
        conn.executemany(SQLITE_UPSERT, fold(map(decode, batch)))
        conn.execute("COMMIT")

    result: Any = consume_all(settings, topic, total, folding if folded else per_event)
    rows = conn.execute(f"SELECT {COLUMNS} FROM accounts")
    result["checksum"] = checksum(rows)
    conn.close()
    return result


def postgres_reader(settings: KafkaSettings, topic: str, total: int, url: str, copy: bool) -> Any:
    import psycopg

    decode = _decoder()
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    upsert = f"INSERT INTO {table} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)" + (
        ON_CONFLICT.format(t=table)
    )
    merge = f"INSERT INTO {table} SELECT * FROM stage" + ON_CONFLICT.format(t=table)
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    conn.execute(CREATE.format(t=table))
    conn.execute(f"CREATE TEMP TABLE stage (LIKE {table}) ON COMMIT DELETE ROWS")
    conn.commit()

    def executemany(batch: list[Any]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(upsert, fold(map(decode, batch)))

    def copying(batch: list[Any]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY stage ({COLUMNS}) FROM STDIN") as pipe:
                for row in fold(map(decode, batch)):
                    pipe.write_row(row)
            cur.execute(merge)

    result: Any = consume_all(settings, topic, total, copying if copy else executemany)
    rows = conn.execute(f"SELECT {COLUMNS} FROM {table}").fetchall()
    result["checksum"] = checksum(rows)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    return result
