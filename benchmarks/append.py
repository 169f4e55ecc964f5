"""Append benchmark: eventsource's group-committed appends vs a raw confluent-kafka loop.

Run as a script (``python benchmarks/append.py [--full]``) against the broker in
``EVENTSOURCE_BOOTSTRAP_SERVERS`` (default 127.0.0.1:9092). Everything is measured in the
same run on the same broker with the same events (``MoneyDeposited``); numbers are reported,
never asserted. Prints a markdown table.

1. raw (P1, the goal's baseline): idempotent ``produce`` of fastavro-encoded single-object
   payloads, keyed by aggregate id, no transactions, no version checks, no headers; plus
   two extra, honest comparisons with the CloudEvents headers every event record carries:
   from a prebuilt template (like the store's writer) and built per record; and the
   strongest plain loop (P1 given the store path's advantages: explicit partition, encoding
   apart from producing, one ``poll`` per 1,000 records, linger 100 ms, the collector paused
   per chunk): the headline ratio's
   denominator is the faster of it and P1 in the same run;
2. eventsource: ``append_async`` closed loop (N appends outstanding, one per aggregate, each
   with its expected version) through the 6 partition writers' group commits: 1-event
   commands (the headline) and ``--per-command``-event commands (N / 10 outstanding); and
   the 1-event commands sent through ``append_many`` (every completion that arrived sends
   its aggregate's next command in one call);
3. single-append latency (one caller, sequential appends) against one raw one-record
   transaction (begin, produce, commit with a transactional producer, sequential);
4. aggregate load time with 10k vs 200k (``--full``: 1M) events in the topic, plus the
   catch-up time it takes the store to start on that topic.

Throughput runs alternate (raw, strongest raw, store 1-event, store N-event) for
``--repeat`` rounds after a discarded warm-up and keep the best of each; beside wall clock
the process CPU time per event (every thread, librdkafka's included) is printed, which a
shared, loaded machine disturbs less.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import queue
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

import fastavro
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsource.codec import EventCodec, build_headers
from eventsource.codec.envelope import header_template, utc_stamp
from eventsource.domain import EventMetadata
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.kafka.ids import new_event_id
from eventsource.store.kafka.options import WriterOptions
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendCall, AppendResult
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

ACCOUNT = Account.aggregate_type
PARTITIONS = 6
CODEC = EventCodec.for_events(Account.event_types())
DEPOSIT = MoneyDeposited(amount=Decimal("12.50"))
Headers = list[tuple[str, str | bytes | None]]


def raw_loop(
    settings: KafkaSettings, topic: str, events: int, aggregates: int, *, headers: str = ""
) -> float:
    """Records/s of an idempotent produce loop with fastavro encoding.

    ``headers="built"``: each record also gets the CloudEvents headers the wire format
    requires, built per record from an ``EventMetadata`` (uuid4 id, clock read per record);
    ``headers="template"``: the same headers from a prebuilt per-type template, with a cheap
    id and one clock reading per 1,000 records (what the store's writer does per group
    commit): the like-for-like baseline. Without headers it is the bare minimum a producer
    can do.
    """
    ensure_topic(settings, topic, PARTITIONS)
    schema = fastavro.parse_schema(CODEC.catalog.schema(MoneyDeposited))
    header = b"\xc3\x01" + CODEC.catalog.fingerprint(MoneyDeposited)
    keys = [f"acc-{i}".encode() for i in range(aggregates)]
    producer = Producer(settings.producer_config())
    event_type = MoneyDeposited.event_type()
    template = header_template("/bench/raw", event_type, ACCOUNT)
    stamp = b""
    started = time.perf_counter()
    for i in range(events):
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, schema, {"amount": DEPOSIT.amount})
        record_headers = None
        if headers == "template":
            if i % 1000 == 0:
                stamp = utc_stamp(datetime.now(UTC))
            record_headers = template.headers(
                new_event_id().encode(), keys[i % aggregates], stamp, i // aggregates + 1
            )
        elif headers == "built":
            meta = EventMetadata(
                event_id=str(uuid.uuid4()),
                event_type=event_type,
                aggregate_type=ACCOUNT,
                aggregate_id=f"acc-{i % aggregates}",
                version=i // aggregates + 1,
                time=datetime.now(UTC),
            )
            record_headers = build_headers(meta, source="/bench/raw")
        while True:
            try:
                producer.produce(
                    topic,
                    out.getvalue(),
                    keys[i % aggregates],
                    headers=cast(Headers | None, record_headers),
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0
    return events / (time.perf_counter() - started)


def strongest_raw_loop(
    settings: KafkaSettings,
    topic: str,
    events: int,
    aggregates: int,
    *,
    headers: bool = False,
    gc_pause: bool = True,
) -> float:
    """Records/s of the strongest plain loop: P1 given every advantage the store's path has.

    What the store's writers do that P1 does not, given to this loop: the partition is
    explicit (computed once per key, like the store's cached partitioner, so librdkafka's
    partitioner never runs); encoding happens apart from producing (a chunk of 1,000
    payloads is encoded with the codec first, as callers encode before the writer
    produces); no per-record ``poll``: delivery reports are served once per chunk (the
    writer asks for two per group commit); the writers' ``linger.ms`` (100 ms). Still no
    transactions, version checks or headers. ``headers=True``: each record also gets the
    CloudEvents headers from a prebuilt template (cheap id, one clock reading per chunk),
    as the store's writer builds them: the ceiling of any store writing that wire format.
    The cyclic collector is paused while a chunk is encoded and produced, as the writers
    pause it while a group commit is in flight (``eventsource.gcpause``; ``gc_pause=False``:
    not paused).
    """
    ensure_topic(settings, topic, PARTITIONS)
    keys = [f"acc-{i}".encode() for i in range(aggregates)]
    partitions = [store_partition(f"acc-{i}") for i in range(aggregates)]
    producer = Producer(settings.producer_config(**{"linger.ms": 100}))
    encode, produce, poll = CODEC.encode, producer.produce, producer.poll
    template = header_template("/bench/raw", MoneyDeposited.event_type(), ACCOUNT)
    chunk = 1000
    started = time.perf_counter()
    collector = gc.isenabled() and gc_pause
    for base in range(0, events, chunk):
        if collector:
            gc.disable()
        payloads = [encode(DEPOSIT) for _ in range(min(chunk, events - base))]
        if headers:  # a separate loop: the headline baseline's stays as lean as it can be
            stamp = utc_stamp(datetime.now(UTC))
            for offset, payload in enumerate(payloads):
                n = (base + offset) % aggregates
                record_headers: Headers = template.headers(  # type: ignore[assignment]
                    new_event_id().encode(), keys[n], stamp, base + offset + 1
                )
                while True:
                    try:
                        produce(
                            topic,
                            payload,
                            keys[n],
                            partition=partitions[n],
                            headers=record_headers,
                        )
                        break
                    except BufferError:
                        poll(0.01)
        else:
            for offset, payload in enumerate(payloads):
                n = (base + offset) % aggregates
                while True:
                    try:
                        produce(topic, payload, keys[n], partition=partitions[n])
                        break
                    except BufferError:
                        poll(0.01)
        poll(0)
        if collector:
            gc.enable()
    assert producer.flush(60) == 0
    return events / (time.perf_counter() - started)


def raw_transaction_latency(settings: KafkaSettings, topic: str, count: int) -> float:
    """p50 in ms of one raw one-record transaction (begin, produce, commit), sequential."""
    ensure_topic(settings, topic, PARTITIONS)
    producer = Producer(settings.transactional_producer_config(f"{topic}.tx", **{"linger.ms": 100}))
    producer.init_transactions(30)
    payload = CODEC.encode(DEPOSIT)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        producer.begin_transaction()
        producer.produce(topic, payload, b"lat", partition=0)
        producer.commit_transaction(30)
        samples.append((time.perf_counter() - started) * 1000)
    producer.flush(10)
    return statistics.median(samples)


def timed(run: Callable[[], float], count: int) -> tuple[float, float]:
    """(what ``run`` returns, process CPU µs per event: every thread, librdkafka's too)."""
    cpu = time.process_time()
    rate = run()
    return rate, (time.process_time() - cpu) / count * 1e6


def store_loop(
    store: KafkaEventStore, events: int, outstanding: int, per_command: int = 1
) -> float:
    """Events/s with ``outstanding`` appends of ``per_command`` events in flight, each with
    its expected version (a closed loop: a completion sends that aggregate's next append)."""
    ids = [f"acc-{uuid.uuid4().hex[:12]}" for _ in range(outstanding)]
    for f in [store.append_async(ACCOUNT, i, [AccountOpened(owner=i)], 0) for i in ids]:
        f.result(60)
    completions: queue.SimpleQueue[tuple[str, Future[AppendResult]]] = queue.SimpleQueue()
    command = [DEPOSIT] * per_command
    commands = events // per_command

    def send(aggregate_id: str, version: int) -> None:
        future = store.append_async(ACCOUNT, aggregate_id, command, version)
        future.add_done_callback(lambda f: completions.put((aggregate_id, f)))

    started = time.perf_counter()
    for aggregate_id in ids:
        send(aggregate_id, 1)
    sent, done = len(ids), 0
    while done < commands:
        aggregate_id, future = completions.get(timeout=60)
        version = future.result().version
        done += 1
        if sent < commands:
            send(aggregate_id, version)
            sent += 1
    return commands * per_command / (time.perf_counter() - started)


def store_many_loop(store: KafkaEventStore, events: int, outstanding: int) -> float:
    """Events/s of :func:`store_loop`'s 1-event commands sent through ``append_many``: the
    caller collects every completion that arrived and sends those aggregates' next
    commands in one call (as a service handling a batch of requests would)."""
    ids = [f"acc-{uuid.uuid4().hex[:12]}" for _ in range(outstanding)]
    for f in [store.append_async(ACCOUNT, i, [AccountOpened(owner=i)], 0) for i in ids]:
        f.result(60)
    completions: queue.SimpleQueue[Future[AppendResult]] = queue.SimpleQueue()
    arrived, command = completions.put, [DEPOSIT]

    def send(commands: list[AppendCall]) -> None:
        for future in store.append_many(commands):
            future.add_done_callback(arrived)

    started = time.perf_counter()
    send([AppendCall(ACCOUNT, aggregate_id, command, 1) for aggregate_id in ids])
    sent, done = len(ids), 0
    while done < events:
        finished = [completions.get(timeout=60)]
        while not completions.empty():
            finished.append(completions.get())
        done += len(finished)
        following = [f.result() for f in finished[: max(0, events - sent)]]
        sent += len(following)
        if following:
            send([AppendCall(ACCOUNT, r.aggregate_id, command, r.version) for r in following])
    return events / (time.perf_counter() - started)


def latency(store: KafkaEventStore, appends: int) -> tuple[float, float]:
    """p50 and p99 in ms of one caller's sequential appends."""
    aggregate_id = f"lat-{uuid.uuid4().hex[:8]}"
    store.append(ACCOUNT, aggregate_id, [AccountOpened(owner="latency")], 0)
    samples = []
    for version in range(1, appends + 1):
        started = time.perf_counter()
        store.append(ACCOUNT, aggregate_id, [DEPOSIT], version)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def seed(settings: KafkaSettings, topic: str, events: int, aggregates: int) -> None:
    """Write ``events`` valid event records for ``aggregates`` accounts (no transactions)."""
    ensure_topic(settings, topic, PARTITIONS)
    producer = Producer(settings.producer_config(**{"linger.ms": 20}))
    versions = [0] * aggregates
    opened = CODEC.encode(AccountOpened(owner="seed"))
    deposit = CODEC.encode(DEPOSIT)
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
                    headers=cast(Headers, build_headers(meta, source="/bench/seed")),
                    # the store's partitioner, so each aggregate lives where the store looks
                    partition=store_partition(f"acc-{n}"),
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0


def store_partition(aggregate_id: str) -> int:
    return partition_for_id(aggregate_id, PARTITIONS)


def load_time(settings: KafkaSettings, prefix: str, events: int) -> tuple[float, float]:
    """(catch-up seconds, mean load µs) with ``events`` events on the topic."""
    aggregates = 1000
    seed(settings, f"{prefix}{ACCOUNT}.events", events, aggregates)
    started = time.perf_counter()
    store = KafkaEventStore(settings, [Account], partitions=PARTITIONS, topic_prefix=prefix)
    store.start(timeout=600)
    catch_up = time.perf_counter() - started
    try:
        ids = [f"acc-{random.randrange(aggregates)}" for _ in range(2000)]
        started = time.perf_counter()
        for aggregate_id in ids:
            store.load(Account, aggregate_id)
        per_load = (time.perf_counter() - started) / len(ids) * 1e6
    finally:
        store.close()
    return catch_up, per_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per throughput run")
    parser.add_argument("--outstanding", type=int, default=2_000, help="appends in flight")
    parser.add_argument(
        "--per-command", type=int, default=10, help="events per command in the second run"
    )
    parser.add_argument("--full", action="store_true", help="1M events for the load run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternating rounds (best of) for throughput"
    )
    parser.add_argument("--no-load", action="store_true", help="skip the load-time runs")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() the start-up objects first (for every run, raw ones included)",
    )
    parser.add_argument(
        "--no-gc-pause",
        action="store_true",
        help="writers and the strongest loops leave the collector running (pause_collector=False)",
    )
    args = parser.parse_args()
    if args.gc_freeze:
        # Long-running services often do this after start-up: the cyclic collector then
        # stops re-scanning every imported module, schema and model on each full collection.
        gc.freeze()
    run = f"bench_{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(
        bootstrap_servers=os.environ.get("EVENTSOURCE_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        application_id=run,
    )
    big = 1_000_000 if args.full else 200_000

    # Alternating rounds on the same broker, best of --repeat: the machine is shared, and
    # the first run in a fresh process is a warm-up (discarded).
    events, outstanding, per = args.events, args.outstanding, args.per_command
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def keep(name: str, run: Callable[[], float]) -> None:
        rate, cpu_per_event = timed(run, events)
        best[name] = max(best.get(name, 0.0), rate)
        cpu[name] = min(cpu.get(name, float("inf")), cpu_per_event)

    raw_loop(settings, f"{run}.warm", events // 4, outstanding)  # warm-up, discarded
    pause = not args.no_gc_pause
    # (options only when asked: the script also runs on trees older than the option)
    options = None if pause else WriterOptions(pause_collector=False)
    with KafkaEventStore(
        settings, [Account], partitions=PARTITIONS, topic_prefix=f"{run}.append.", options=options
    ) as store:
        store_loop(store, events // 4, outstanding)  # warm-up, discarded
        for round_ in range(args.repeat):
            keep("raw", lambda: raw_loop(settings, f"{run}.raw", events, outstanding))
            keep(
                "strong",
                lambda: strongest_raw_loop(
                    settings, f"{run}.raws", events, outstanding, gc_pause=pause
                ),
            )
            keep("ours", lambda: store_loop(store, events, outstanding))
            keep("multi", lambda: store_loop(store, events, outstanding // 10, per))
            keep("many", lambda: store_many_loop(store, events, outstanding))
            if round_ == 0:
                keep(
                    "strong_headers",
                    lambda: strongest_raw_loop(
                        settings, f"{run}.rawsh", events, outstanding, headers=True, gc_pause=pause
                    ),
                )
                keep(
                    "built",
                    lambda: raw_loop(settings, f"{run}.rawb", events, outstanding, headers="built"),
                )
                keep(
                    "templated",
                    lambda: raw_loop(
                        settings, f"{run}.rawt", events, outstanding, headers="template"
                    ),
                )
        p50, p99 = latency(store, 300)
    raw_tx = raw_transaction_latency(settings, f"{run}.tx", 300)
    raw, built, templated = best["raw"], best["built"], best["templated"]
    # The strongest plain loop is whichever of the two plain loops was faster in this run.
    strong = max(raw, best["strong"])
    strongest = "the loop above" if best["strong"] >= raw else "P1"
    ours, multi = best["ours"], best["multi"]
    small_catch_up = small_load = big_catch_up = big_load = float("nan")
    if not args.no_load:
        small_catch_up, small_load = load_time(settings, f"{run}.s10k.", 10_000)
        big_catch_up, big_load = load_time(settings, f"{run}.big.", big)

    frozen = ", gc.freeze() after start-up" if args.gc_freeze else ""
    frozen += "" if pause else ", collector never paused"
    print(
        f"\n### Append benchmark ({args.events:,} events, best of {args.repeat} alternating "
        f"rounds, broker {settings.bootstrap_servers}{frozen})\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| raw idempotent produce + fastavro, no headers (records/s) | {raw:,.0f} |")
    print(
        "| strongest raw loop: explicit partition, encoding apart, one poll per 1,000, "
        f"linger 100 ms (records/s) | {best['strong']:,.0f} |"
    )
    print(
        "| strongest raw loop + CloudEvents headers from a template (records/s) "
        f"| {best['strong_headers']:,.0f} |"
    )
    print(f"| raw + CloudEvents headers from a template (records/s) | {templated:,.0f} |")
    print(f"| raw + CloudEvents headers built per record (records/s) | {built:,.0f} |")
    print(
        f"| eventsource append, 1-event commands, group commit, {args.outstanding:,} "
        f"outstanding (events/s) | {ours:,.0f} |"
    )
    print(f"| strongest plain loop in this run | {strongest} |")
    print(f"| **ratio eventsource / raw (goal >= 0.7)** | **{ours / strong:.2f}** |")
    print(
        f"| ratio eventsource / raw P1 as measured before (plain produce loop) | {ours / raw:.2f} |"
    )
    print(
        "| ratio eventsource / strongest raw loop with template headers "
        f"| {ours / best['strong_headers']:.2f} |"
    )
    print(f"| ratio eventsource / raw with template headers | {ours / templated:.2f} |")
    print(f"| ratio eventsource / raw with headers built per record | {ours / built:.2f} |")
    print(
        f"| eventsource 1-event commands through append_many, {args.outstanding:,} "
        f"outstanding (events/s) | {best['many']:,.0f} |"
    )
    print(f"| ratio 1-event commands through append_many / raw | {best['many'] / strong:.2f} |")
    print(
        f"| eventsource append, {args.per_command}-event commands, "
        f"{args.outstanding // 10:,} outstanding (events/s) | {multi:,.0f} |"
    )
    print(f"| ratio {args.per_command}-event commands / raw | {multi / strong:.2f} |")
    print(
        "| CPU µs per event (process, all threads): raw / strongest raw / eventsource 1-event "
        f"/ {per}-event | {cpu['raw']:.1f} / {cpu['strong']:.1f} / {cpu['ours']:.1f} "
        f"/ {cpu['multi']:.1f} |"
    )
    print(f"| CPU µs per event: 1-event commands through append_many | {cpu['many']:.1f} |")
    print(
        "| CPU µs per event: strongest raw loop with template headers "
        f"| {cpu['strong_headers']:.1f} |"
    )
    print(
        "| ratio eventsource / strongest raw by CPU time (1-event) "
        f"| {min(cpu['strong'], cpu['raw']) / cpu['ours']:.2f} |"
    )
    print(
        "| ratio eventsource / strongest raw loop with template headers by CPU time (1-event) "
        f"| {cpu['strong_headers'] / cpu['ours']:.2f} |"
    )
    print(f"| single append latency p50 / p99 (ms) | {p50:.1f} / {p99:.1f} |")
    print(f"| raw one-record transaction p50 (ms) | {raw_tx:.1f} |")
    print(
        "| **ratio single append p50 / raw one-record transaction (goal <= 1.5)** "
        f"| **{p50 / raw_tx:.2f}** |"
    )
    print(f"| load aggregate, 10k events on topic (µs) | {small_load:.1f} |")
    print(f"| load aggregate, {big:,} events on topic (µs) | {big_load:.1f} |")
    print(
        f"| catch-up at start, 10k / {big:,} events (s) "
        f"| {small_catch_up:.1f} / {big_catch_up:.1f} |"
    )
    if not args.full:
        print("\n(load run reduced to 200k events; pass --full for 1M)")


if __name__ == "__main__":
    main()
