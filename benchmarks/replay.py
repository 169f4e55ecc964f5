"""Replay benchmark: the projection runner against a raw confluent-kafka + fastavro loop.

Run: ``python benchmarks/replay.py [--events 100000,1000000] [--repeat 3]`` with a broker
at ``EVENTSOURCE_BOOTSTRAP_SERVERS`` (``make bench`` provides one). Reported, not asserted.
For quick iterations: ``--events 100000`` (one size, about a minute), ``--repeat 3`` (best of
three runs of each reader: the machine's noise mostly slows runs down), and ``--topic NAME``
to read an already seeded topic of that size again (``--seed N`` seeds one and prints it).

For each size N the same topic (6 partitions, bank events from
``examples.bank.projections.sample_history``, written once) is read by:

- **raw+fold** (the ratio's denominator on SQLite: the strongest plain loop):
  ``Consumer.consume(num_messages=5000)`` (read_committed, assigned partitions, no group),
  fastavro ``schemaless_reader``, the batch folded per key in a dict, one ``executemany``
  through ``sqlite3`` per batch in one transaction (``benchmarks/replay_raw.py``).
- **raw**: the same loop executing one upsert per event (the earlier baseline, kept as a
  second reference: "ratio to raw per-event").
- **raw+codec**: the per-event loop decoding with eventsource's codec (typed pydantic
  events and metadata): the part of the gap that is typed decoding rather than the runner.
- **per-event**: ``ProjectionRunner`` + ``AccountBalancesPerEvent`` (one statement
  executed per event: ``ctx.upsert(..., immediate=True)``), checkpoints in each transaction.
- **batch**: ``ProjectionRunner`` + ``AccountBalances`` (``ctx.upsert``: one
  ``executemany`` per consume batch), checkpoints in each transaction.
- With ``EVENTSOURCE_TEST_POSTGRES_URL`` set (``make bench`` sets it): **pg+executemany**
  and **pg+copy** (the same fold through psycopg 3: pipelined ``executemany``, or ``COPY``
  into a temporary table and one ``INSERT ... SELECT ... ON CONFLICT``; the faster is the
  denominator) and **pg batch** (the runner's batch path on PostgreSQL).

Every plain loop pauses the cyclic garbage collector from each consume until its batch is
written and released, as the runner does (it almost halves their CPU). Every reader's
final table is checksummed; the run fails if two readers of one database
produced different tables. Readers run alternately round by round (``--repeat``), so that
a noisy moment on a shared machine hits all of them.

Seeding and each reader run in their own subprocesses so peak memory (``ru_maxrss``) is
the reader's own (a child inherits its parent's high-water mark, so the parent stays
small). Rates count from the first record received to the last record's transaction
committed, on every side (the runner's consumer-group join and the final consume that
finds nothing are excluded). CPU seconds (``time.process_time``: every thread of the
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import replay_raw  # noqa: E402  (benchmarks/replay_raw.py, beside this file)

from eventsource.kafka.config import KafkaSettings  # noqa: E402

#: PostgreSQL for the PostgreSQL rows (``make bench`` exports it); skipped when unset
PG_ENV = "EVENTSOURCE_TEST_POSTGRES_URL"
#: the plain psycopg 3 loops; the fastest of them is the PostgreSQL rows' denominator
PG_LOOPS = ("pg+executemany", "pg+copy")


def codec_reader(settings: KafkaSettings, topic: str, total: int, db: str) -> dict[str, Any]:
    """The per-event raw loop decoding with eventsource's codec (``parse_headers`` +
    ``decode_at``: typed pydantic events and metadata) instead of bare fastavro, to separate
    the cost of typed decoding from the runner's own."""
    import sqlite3

    from eventsource.codec import EventCodec, parse_headers
    from examples.bank.domain import Account

    codec = EventCodec.for_events(Account.event_types())
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(replay_raw.CREATE.format(t="accounts"))

    def write(batch: list[Any]) -> None:
        conn.execute("BEGIN")
        for message in batch:
            meta = parse_headers(message.headers())
            event = codec.decode_at(message.value(), topic, message.partition(), message.offset())
            name = type(event).__name__
            amount = getattr(event, "amount", 0)
            delta = -int(amount * 100) if name == "MoneyWithdrawn" else int(amount * 100)
            owner = getattr(event, "owner", None)
            conn.execute(
                replay_raw.SQLITE_UPSERT,
                (meta.aggregate_id, owner, delta, 1, meta.version, name == "AccountClosed"),
            )
        conn.execute("COMMIT")

    result: dict[str, Any] = dict(replay_raw.consume_all(settings, topic, total, write))
    result["checksum"] = replay_raw.checksum(
        conn.execute(f"SELECT {replay_raw.COLUMNS} FROM accounts")  # noqa: S608
    )
    conn.close()
    return result


def runner_reader(
    settings: KafkaSettings, topic: str, total: int, db: str, batched: bool
) -> dict[str, Any]:
    from sqlalchemy import select

    from eventsource.projection import NullListener, ProjectionRunner
    from examples.bank.projections import AccountBalances, AccountBalancesPerEvent

    class Clock(NullListener):
        """First record received to last record committed, as the plain loops count."""

        started = 0.0
        ended = 0.0
        cpu_ended = 0.0

        def on_batch(self, n_events: int, seconds: float) -> None:
            now = time.perf_counter()
            if not self.started:
                self.started = now - seconds
            self.ended = now
            self.cpu_ended = time.process_time()

    listener = Clock()
    cls = AccountBalances if batched else AccountBalancesPerEvent
    projection = cls(name=f"bench_{uuid.uuid4().hex[:8]}", topics=[topic])
    with ProjectionRunner(projection, settings, db, batch_size=5000, listener=listener) as runner:
        cpu_started = time.process_time()
        stats = runner.run_until_caught_up(timeout=3600)
        accounts = projection.tables["accounts"]
        with runner.engine.connect() as conn:
            digest = replay_raw.checksum(conn.execute(select(*accounts.c)))
    assert stats.applied == total, stats
    return {
        "events": stats.applied,
        "seconds": listener.ended - listener.started,
        "cpu_seconds": listener.cpu_ended - cpu_started,
        "checksum": digest,
    }


def child(kind: str, topic: str, total: int) -> None:
    settings = KafkaSettings()
    postgres = os.environ.get(PG_ENV, "")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        result: dict[str, Any]
        if kind == "raw":
            result = replay_raw.sqlite_reader(settings, topic, total, db, folded=False)
        elif kind == "raw+fold":
            result = replay_raw.sqlite_reader(settings, topic, total, db, folded=True)
        elif kind == "raw+codec":
            result = codec_reader(settings, topic, total, db)
        elif kind in ("pg+executemany", "pg+copy"):
            result = replay_raw.postgres_reader(
                settings, topic, total, postgres, copy=(kind == "pg+copy")
            )
        elif kind == "pg batch":
            result = runner_reader(settings, topic, total, postgres, batched=True)
        else:
            result = runner_reader(settings, topic, total, db, batched=(kind == "batch"))
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _measure_once(kind: str, topic: str, total: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, topic, str(total)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if done.returncode != 0:
        sys.exit(f"the {kind} reader failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
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
    parser.add_argument(
        "--postgres-all", action="store_true", help="the PostgreSQL rows at every size too"
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
        results = _read_all(args, topic, total, first)
        first = False
        for backend, strongest, kinds in results:
            best = kinds[strongest]
            best_rate = best["events"] / best["seconds"]
            per_event = kinds.get("raw")
            for kind, r in kinds.items():
                rate = r["events"] / r["seconds"]
                vs_per_event = (
                    f"{rate / (per_event['events'] / per_event['seconds']):.2f}"
                    if per_event
                    else "-"
                )
                rows.append(
                    (
                        f"{total:,}",
                        backend,
                        kind + (" (strongest)" if kind == strongest else ""),
                        f"{rate:,.0f}",
                        f"{rate / best_rate:.2f}",
                        f"{best['cpu_seconds'] / r['cpu_seconds']:.2f}",
                        vs_per_event,
                        f"{r['max_rss_mb']:.0f}",
                    )
                )
            print(
                f"  {total:,} {backend}: every reader's table {best['checksum']}", file=sys.stderr
            )
    # ratio by CPU: the strongest loop's CPU seconds / the reader's (all threads,
    # librdkafka's too), much less disturbed than wall time by other processes
    print(
        "| events | database | reader | events/s | ratio to strongest loop (goal >= 0.8) "
        "| ratio by CPU time | ratio to raw per-event | peak RSS MB |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _read_all(
    args: argparse.Namespace, topic: str, total: int, first: bool
) -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    """(database, strongest plain loop, results per reader) for each database measured.

    Runs fail loudly when two readers' final tables differ."""
    every = first or args.all
    sqlite = ("raw+fold", "raw", "batch") + (("raw+codec", "per-event") if every else ())
    plans = [("SQLite", sqlite, ("raw+fold",))]
    if os.environ.get(PG_ENV) and (every or args.postgres_all):
        plans.append(("PostgreSQL", ("pg+executemany", "pg+copy", "pg batch"), PG_LOOPS))
    out = []
    for backend, kinds, loops in plans:
        results: dict[str, dict[str, Any]] = {}
        # alternate the readers round by round, so that a noisy moment hits all of them
        for _ in range(args.repeat):
            for kind in kinds:
                run = _measure_once(kind, topic, total)
                results[kind] = _best(results.get(kind), run, kind)
        for kind, r in results.items():
            print(
                f"  {total:,} {kind}: {r['events'] / r['seconds']:,.0f} events/s, "
                f"peak {r['max_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
        digests = {kind: r["checksum"] for kind, r in results.items()}
        if len(set(digests.values())) != 1:
            sys.exit(f"{backend}: the readers did not produce the same table: {digests}")
        strongest = max(loops, key=lambda k: results[k]["events"] / results[k]["seconds"])
        out.append((backend, strongest, results))
    return out


def _best(old: dict[str, Any] | None, new: dict[str, Any], kind: str) -> dict[str, Any]:
    """Keep the fastest run; the least CPU and the largest peak memory seen."""
    if old is None:
        return new
    if old["checksum"] != new["checksum"]:
        sys.exit(f"the {kind} reader produced different tables from run to run")
    best = min(old, new, key=lambda r: r["seconds"])
    return {
        **best,
        "cpu_seconds": min(old["cpu_seconds"], new["cpu_seconds"]),
        "max_rss_mb": max(old["max_rss_mb"], new["max_rss_mb"]),
    }


if __name__ == "__main__":
    main()
