"""Replay benchmark: the projection runner against a raw confluent-kafka + fastavro loop.

Run: ``python benchmarks/replay.py [--events 100000,1000000] [--repeat 3]`` with a broker
at ``EVENTSOURCE_BOOTSTRAP_SERVERS`` (``make bench`` provides one). Reported, not asserted.
For quick iterations: ``--events 100000`` (one size, about a minute), ``--repeat 3`` (best of
three runs of each reader: the machine's noise mostly slows runs down), and ``--topic NAME``
to read an already seeded topic of that size again (``--seed N`` seeds one and prints it).

For each size N the same topic (6 partitions, bank events from
``examples.bank.projections.sample_history``, written once) is read by:

- **raw**: ``Consumer.consume(num_messages=5000)`` (read_committed, assigned partitions, no
  group), headers looked up in a dict, fastavro ``schemaless_reader`` on the body, and the
  same upsert per event through ``sqlite3``; one SQLite transaction per batch.
- **raw+codec**: the same loop decoding with eventsource's codec (typed pydantic events and
  metadata): the part of the gap that is typed decoding rather than the runner.
- **runner, per-event**: ``ProjectionRunner`` + ``AccountBalancesPerEvent`` (one statement
  executed per event: ``ctx.upsert(..., immediate=True)``), checkpoints in each transaction.
- **runner, batch**: ``ProjectionRunner`` + ``AccountBalances`` (``ctx.upsert``: one
  ``executemany`` per consume batch), checkpoints in each transaction.

Seeding and each reader run in their own subprocesses so peak memory (``ru_maxrss``) is
the reader's own (a child inherits its parent's high-water mark, so the parent stays
small). Rates count from the first record received (the runner's consumer-group join is
excluded, the raw loop has none). CPU seconds (``time.process_time``: every thread of the
reader, librdkafka's included, from just before reading) are reported beside: on a shared
machine they are disturbed far less by other processes than wall time. All read the topic
from the beginning into a fresh SQLite file. The slower readers (raw+codec, per-event) run
only at the first size unless ``--all``; the default run takes about 4-5 minutes on a busy
2-CPU machine, most of it writing the 1M events.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eventsource.kafka.config import KafkaSettings  # noqa: E402

UPSERT = (
    "INSERT INTO accounts (account_id, owner, balance_cents, events, version, closed) "
    "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
    "owner = coalesce(excluded.owner, accounts.owner), "
    "balance_cents = accounts.balance_cents + excluded.balance_cents, "
    "events = accounts.events + 1, version = excluded.version, closed = excluded.closed"
)


def raw_reader(
    settings: KafkaSettings, topic: str, total: int, db: str, use_codec: bool = False
) -> dict[str, float]:
    """The baseline: what a careful hand-written consumer does.

    ``use_codec``: decode with eventsource's codec (``parse_headers`` + ``decode_at``:
    typed pydantic events and metadata) instead of bare fastavro dicts, to separate the
    cost of typed decoding from the runner's own.
    """
    import io
    import sqlite3
    from decimal import Decimal

    import fastavro
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from eventsource.codec import EventCodec, SchemaCatalog, avro_schema, parse_headers
    from examples.bank.domain import Account

    codec = EventCodec.for_events(Account.event_types())

    catalog = SchemaCatalog()  # only to learn the fingerprints; decoding is plain fastavro
    schemas = {}
    for event_type in Account.event_types():
        catalog.register(event_type)
        schemas[catalog.fingerprint(event_type)] = fastavro.parse_schema(avro_schema(event_type))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE accounts (account_id VARCHAR(64) PRIMARY KEY, owner VARCHAR(200), "
        "balance_cents BIGINT NOT NULL, events INTEGER NOT NULL, version INTEGER NOT NULL, "
        "closed BOOLEAN NOT NULL)"
    )
    consumer = Consumer(settings.consumer_config(f"bench.raw.{uuid.uuid4().hex}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = 0
    started = 0.0
    cpu_started = time.process_time()
    while seen < total:
        batch = consumer.consume(num_messages=5000, timeout=1.0)
        if not batch:
            continue
        if not started:
            started = time.perf_counter()
        conn.execute("BEGIN")
        if use_codec:
            for message in batch:
                meta = parse_headers(message.headers())
                event = codec.decode_at(
                    message.value(), topic, message.partition(), message.offset()
                )
                name = type(event).__name__
                amount = getattr(event, "amount", 0)
                delta = -int(amount * 100) if name == "MoneyWithdrawn" else int(amount * 100)
                owner = getattr(event, "owner", None)
                conn.execute(
                    UPSERT, (meta.aggregate_id, owner, delta, meta.version, name == "AccountClosed")
                )
            conn.execute("COMMIT")
            seen += len(batch)
            continue
        for message in batch:
            headers = dict(message.headers())
            value = message.value()
            schema = schemas[value[2:10]]
            datum = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
            name = headers["ce_type"].decode().rsplit(".", 1)[1]
            delta = 0
            if name == "MoneyDeposited":
                delta = int(Decimal(datum["amount"]) * 100)
            elif name == "MoneyWithdrawn":
                delta = -int(Decimal(datum["amount"]) * 100)
            conn.execute(
                UPSERT,
                (
                    headers["ce_subject"].decode(),
                    datum.get("owner"),
                    delta,
                    int(headers["ce_sequence"]),
                    name == "AccountClosed",
                ),
            )
        conn.execute("COMMIT")
        seen += len(batch)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    consumer.close()
    conn.close()
    return {"events": seen, "seconds": seconds, "cpu_seconds": cpu}


def runner_reader(
    settings: KafkaSettings, topic: str, total: int, db: str, batched: bool
) -> dict[str, float]:
    from eventsource.projection import NullListener, ProjectionRunner
    from examples.bank.projections import AccountBalances, AccountBalancesPerEvent

    class FirstBatch(NullListener):
        started = 0.0

        def on_batch(self, n_events: int, seconds: float) -> None:
            if not self.started:
                self.started = time.perf_counter() - seconds

    listener = FirstBatch()
    cls = AccountBalances if batched else AccountBalancesPerEvent
    projection = cls(name=f"bench_{uuid.uuid4().hex[:8]}", topics=[topic])
    with ProjectionRunner(projection, settings, db, batch_size=5000, listener=listener) as runner:
        cpu_started = time.process_time()
        stats = runner.run_until_caught_up(timeout=3600)
        ended = time.perf_counter()
        cpu = time.process_time() - cpu_started
    assert stats.applied == total, stats
    return {"events": stats.applied, "seconds": ended - listener.started, "cpu_seconds": cpu}


def child(kind: str, topic: str, total: int) -> None:
    settings = KafkaSettings()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        if kind.startswith("raw"):
            result = raw_reader(settings, topic, total, db, use_codec=(kind == "raw+codec"))
        else:
            result = runner_reader(settings, topic, total, db, batched=(kind == "batch"))
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, topic: str, total: int, repeat: int = 1) -> dict[str, float]:
    """The best (fastest) of ``repeat`` runs; peak memory is the largest seen."""
    runs = [_measure_once(kind, topic, total) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    return {
        **best,
        "cpu_seconds": min(r["cpu_seconds"] for r in runs),
        "max_rss_mb": max(r["max_rss_mb"] for r in runs),
    }


def _measure_once(kind: str, topic: str, total: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, topic, str(total)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if done.returncode != 0:
        sys.exit(f"the {kind} reader failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def seed(settings: KafkaSettings, total: int) -> str:
    from eventsource.testing.seed import create_topic, seed_events
    from examples.bank.projections import sample_history

    topic = f"bench.replay.{total}.{uuid.uuid4().hex[:6]}"
    create_topic(settings, topic, partitions=6)
    chunk = 100_000
    for start in range(0, total, chunk):
        history = sample_history(accounts=1000, events=min(chunk, total - start), seed=start)
        # distinct account ids per chunk keep every chunk a valid history on its own
        renamed = [type(e)(f"{e.aggregate_id}-{start}", e.event) for e in history]
        seed_events(settings, topic, renamed, transaction_size=5000)
    return topic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help="seed a topic of this size, print its name")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per reader")
    parser.add_argument("--topic", help="read this already seeded topic (one size only)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="every reader at every size (default: the slower "
        "readers only at the first size, to keep the run short)",
    )
    args = parser.parse_args()
    if args.seed:
        print(seed(KafkaSettings(), args.seed))
        return
    if args.child:
        kind, topic, total = args.child
        child(kind, topic, int(total))
        return
    settings = KafkaSettings()
    print(
        f"broker {settings.bootstrap_servers}; python {sys.version.split()[0]}; "
        f"{os.cpu_count()} CPUs\n"
    )
    rows = []
    first = True
    sizes = [int(n) for n in args.events.split(",")]
    if args.topic and len(sizes) != 1:
        parser.error("--topic reads one topic: give its size as the only --events value")
    for total in sizes:
        started = time.perf_counter()
        topic = (
            args.topic
            or (
                subprocess.run(
                    [sys.executable, __file__, "--seed", str(total)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
                .stdout.strip()
                .splitlines()[-1]
            )
        )
        if not args.topic:
            seconds = time.perf_counter() - started
            print(f"seeded {total:,} events in {seconds:.1f}s", file=sys.stderr)
        kinds = (
            ("raw", "raw+codec", "per-event", "batch") if first or args.all else ("raw", "batch")
        )
        first = False
        results = {kind: measure(kind, topic, total, args.repeat) for kind in kinds}
        raw_rate = results["raw"]["events"] / results["raw"]["seconds"]
        raw_cpu = results["raw"]["cpu_seconds"]
        for kind, r in results.items():
            rate = r["events"] / r["seconds"]
            rows.append(
                (
                    f"{total:,}",
                    kind,
                    f"{rate:,.0f}",
                    f"{rate / raw_rate:.2f}",
                    f"{raw_cpu / r['cpu_seconds']:.2f}",
                    f"{r['max_rss_mb']:.0f}",
                )
            )
            print(
                f"  {total:,} {kind}: {rate:,.0f} events/s, peak {r['max_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
    # ratio by CPU: raw CPU seconds / reader CPU seconds (all threads, librdkafka's too),
    # much less disturbed than wall time by other processes on a busy machine
    print(
        "| events | reader | events/s | ratio to raw (goal >= 0.7) | ratio by CPU time "
        "| peak RSS MB |"
    )
    # (slower readers run only at the first size unless --all)
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
