"""Takeover benchmark: what a grouped writer costs in memory and in time to take a partition.

Run as a script (``python benchmarks/takeover.py [--full]``) against the broker in
``EVENTSOURCE_BOOTSTRAP_SERVERS`` (default 127.0.0.1:9092). Numbers are reported, never
asserted; prints markdown tables. Every store runs in a child process of its own, so its
resident memory (``VmHWM``, the peak) is its own.

1. **Takeover time** of a one-partition topic holding 1,000 aggregates with 10k vs 1M events:
   the single-owner ``KafkaEventStore`` replays every event; a ``GroupedKafkaEventStore``
   member with no local file restores the snapshot topic (time ~ aggregates, not events).
   The first grouped member on a topic seeded without snapshots rebuilds from the events
   and writes the snapshots: that one-off cost is reported too.
2. **Memory** of a writer owning N aggregates (100k; ``--full``: also 1M) on one partition:
   the in-memory index of ``KafkaEventStore`` vs the bounded cache + SQLite file of the
   grouped writer (default ``cache_size`` 10,000).

The topics are seeded with a raw producer (valid records in the store's wire format), as in
``benchmarks/append.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import EventMetadata
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

ACCOUNT = Account.aggregate_type
CODEC = EventCodec.for_events(Account.event_types())
HeaderList = list[tuple[str, str | bytes | None]]


def seed(settings: KafkaSettings, topic: str, events: int, aggregates: int) -> None:
    """``events`` valid records for ``aggregates`` accounts on ``topic`` (one partition)."""
    ensure_topic(settings, topic, 1)
    producer = Producer(settings.producer_config(**{"linger.ms": 20}))
    versions = [0] * aggregates
    opened = CODEC.encode(AccountOpened(owner="seed"))
    deposit = CODEC.encode(MoneyDeposited(amount=Decimal("12.50")))
    now = datetime.now(UTC)
    for i in range(events):
        n = i % aggregates
        versions[n] += 1
        first = versions[n] == 1
        meta = EventMetadata(
            event_id=str(uuid.uuid4()),
            event_type=(AccountOpened if first else MoneyDeposited).event_type(),
            aggregate_type=ACCOUNT,
            aggregate_id=f"acc-{n}",
            version=versions[n],
            time=now,
        )
        while True:
            try:
                producer.produce(
                    topic,
                    opened if first else deposit,
                    f"acc-{n}".encode(),
                    headers=cast(HeaderList, build_headers(meta, source="/bench/seed")),
                    partition=0,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, bootstrap: str, app: str, directory: str) -> dict[str, object]:
    """One store taking the whole topic; its timings and peak memory."""
    settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app)
    started = time.perf_counter()
    if mode == "plain":
        plain = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{app}.")
        plain.start(timeout=900)
        seconds = time.perf_counter() - started
        aggregates = sum(len(w.index) for w in plain._writers.values())
        plain.close()
        return {"seconds": seconds, "aggregates": aggregates, "rss_mb": peak_rss_mb()}
    store = GroupedKafkaEventStore(
        settings,
        [Account],
        directory=Path(directory),
        member=f"bench-{os.getpid()}",
        partitions=1,
        topic_prefix=f"{app}.",
    ).start()
    deadline = time.monotonic() + 900
    while not store.owned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.wait_serving(900), "the grouped writer did not start serving"
    (writer,) = store.owned.values()
    result = {
        "seconds": writer.takeover_seconds,
        "restored_from": writer.restored_from,
        "aggregates": len(writer.index),
        "caught_up_events": writer.caught_up_events,
        "rss_mb": peak_rss_mb(),
    }
    store.close()
    return result


def run_child(mode: str, bootstrap: str, app: str) -> dict[str, object]:
    directory = tempfile.mkdtemp(prefix="takeover-")
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, bootstrap, app, directory],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also 1M aggregates")
    parser.add_argument("--memory-only", action="store_true", help="skip the takeover table")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    bootstrap = os.environ.get("EVENTSOURCE_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    run = uuid.uuid4().hex[:8]

    if not args.memory_only:
        takeover(bootstrap, run)
    memory(bootstrap, run, (100_000, 1_000_000) if args.full else (100_000,))


def takeover(bootstrap: str, run: str) -> None:
    print("## Takeover of one partition with 1,000 aggregates\n")
    print(
        "| events | replay (single owner) s | rebuild + write snapshots s | "
        "restore from snapshots s | restored from | events caught up |"
    )
    print("|---:|---:|---:|---:|---|---:|")
    for events in (10_000, 1_000_000):
        app = f"bench_takeover_{run}_{events}"
        settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app)
        seed(settings, f"{app}.{ACCOUNT}.events", events, 1000)
        replay = run_child("plain", bootstrap, app)
        rebuild = run_child("grouped", bootstrap, app)
        restore = run_child("grouped", bootstrap, app)
        print(
            f"| {events:,} | {replay['seconds']:.2f} | {rebuild['seconds']:.2f} "
            f"({rebuild['restored_from']}) | {restore['seconds']:.2f} | "
            f"{restore['restored_from']} | {restore['caught_up_events']} |",
            flush=True,
        )


def memory(bootstrap: str, run: str, sizes: tuple[int, ...]) -> None:
    print("\n## Peak memory (RSS) of a writer owning N aggregates (one partition)\n")
    print(
        "| aggregates | single owner, in-memory index MB | grouped, rebuilding MB | "
        "grouped, restoring snapshots MB | restore s |"
    )
    print("|---:|---:|---:|---:|---:|")
    for aggregates in sizes:
        app = f"bench_memory_{run}_{aggregates}"
        settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app)
        seed(settings, f"{app}.{ACCOUNT}.events", aggregates, aggregates)
        plain = run_child("plain", bootstrap, app)
        rebuild = run_child("grouped", bootstrap, app)
        restore = run_child("grouped", bootstrap, app)
        assert restore["aggregates"] == aggregates == plain["aggregates"]
        print(
            f"| {aggregates:,} | {plain['rss_mb']:.0f} | {rebuild['rss_mb']:.0f} | "
            f"{restore['rss_mb']:.0f} | {restore['seconds']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
