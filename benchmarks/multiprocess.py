"""Appending from several processes: routing to one owner, and grouped writers.

Run: ``python benchmarks/multiprocess.py [--aggregates 2000] [--events 5] [--clients 1,2,4]``
with a broker at ``EVENTSOURCE_BOOTSTRAP_SERVERS`` (``make bench`` provides one). Reported,
not asserted. Every load is one-event commands in a closed loop: each aggregate has one
append outstanding at a time (its next append is sent once the previous one is answered,
with the version it returned), ``--aggregates`` aggregates at once, ``--events`` appends
each after a first ``AccountOpened`` per aggregate that is not counted (warm-up: topics,
producers, routing clients, ownership lookups). p50/p99 are of single appends, from the
call to the future's completion.

(a) **Routing to one owner**: this process owns a ``KafkaEventStore`` (6 partitions) and
serves an ``AppendServer``. First the load is appended in the owner process itself
(``append_async``), then by N client processes (``RemoteEventStore.append_async``, the
aggregates split between them) for each N of ``--clients``.

(b) **Grouped writers**: one, then three ``GroupedKafkaEventStore`` writer processes
(``serve_routing``) on six partitions; this process drives the same load through a
``GroupRouter`` (it chains on the clients' futures: no thread per append in flight).

Processes are started with ``spawn`` so they share nothing with this one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eventsource.kafka.config import KafkaSettings  # noqa: E402

ACCOUNT = "bank.account"
PARTITIONS = 6

Submit = Callable[[str, list[Any], int], "Future[Any]"]


def closed_loop(
    submit: Submit, ids: list[str], events: int, retried: Callable[[], int] = lambda: 0
) -> dict[str, Any]:
    """Open every aggregate (not counted), then ``events`` deposits each, one outstanding
    per aggregate; returns events, seconds, CPU seconds, the latencies (s) and how many
    appends ``retried`` says were sent again during the counted deposits."""
    from decimal import Decimal

    from examples.bank.domain import AccountOpened, MoneyDeposited

    for future in [submit(i, [AccountOpened(owner=i)], 0) for i in ids]:
        future.result(timeout=120)
    deposit = [MoneyDeposited(amount=Decimal("1.00"))]
    latencies: list[float] = []
    # completions come back on the store's threads; the next append is sent from here
    completions: queue.SimpleQueue[tuple[str, float, Future[Any]]] = queue.SimpleQueue()

    def send(aggregate_id: str, version: int) -> None:
        sent = time.perf_counter()
        future = submit(aggregate_id, deposit, version)
        future.add_done_callback(
            lambda f: completions.put((aggregate_id, time.perf_counter() - sent, f))
        )

    total = len(ids) * events
    retried_before = retried()
    started = time.perf_counter()
    cpu = time.process_time()
    for aggregate_id in ids:
        send(aggregate_id, 1)
    for _ in range(total):
        aggregate_id, latency, future = completions.get(timeout=300)
        latencies.append(latency)
        version = future.result().version
        if version < events + 1:
            send(aggregate_id, version)
    return {
        "events": total,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "latencies": latencies,
        "retried": retried() - retried_before,
    }


def remote_client(app_id: str, ids: list[str], events: int, go: MpEvent, out: Any) -> None:
    """A client process: the closed loop through ``RemoteEventStore``."""
    from eventsource.codec import EventCodec
    from eventsource.store.routing import RemoteEventStore
    from examples.bank.domain import Account

    settings = KafkaSettings(application_id=app_id)
    codec = EventCodec.for_events(Account.event_types())
    with RemoteEventStore(settings, codec, timeout=60) as client:
        go.wait(120)
        out.put(closed_loop(lambda i, e, v: client.append_async(ACCOUNT, i, e, v), ids, events))


def grouped_writer(
    app_id: str, member: str, directory: str, backlog: int, ready: Any, stop: MpEvent
) -> None:
    """A writer process: ``GroupedKafkaEventStore`` + ``serve_routing`` until stopped."""
    from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
    from eventsource.store.kafka.scaleout.group_store_route import serve_routing
    from examples.bank.domain import Account

    settings = KafkaSettings(application_id=app_id)
    store = GroupedKafkaEventStore(
        settings,
        [Account],
        directory=Path(directory),
        member=member,
        partitions=PARTITIONS,
        topic_prefix=f"{app_id}.",
    )
    with store.start(), serve_routing(store, max_pending=backlog):
        ready.put(member)
        stop.wait(3600)


def summary(name: str, runs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    events = sum(r["events"] for r in runs)
    latencies = sorted(x for r in runs for x in r["latencies"])
    return {
        "name": name,
        "rate": events / seconds,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu_us": sum(r["cpu_seconds"] for r in runs) / events * 1e6,
    }


def routing_to_one_owner(args: argparse.Namespace, ctx: Any) -> list[dict[str, Any]]:
    from eventsource.store.kafka import KafkaEventStore
    from eventsource.store.routing import AppendServer
    from examples.bank.domain import Account

    app_id = f"bench_mp_{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(application_id=app_id)
    rows = []
    store = KafkaEventStore(settings, [Account], partitions=PARTITIONS, topic_prefix=f"{app_id}.")
    # One append per aggregate is outstanding: up to --aggregates in flight at the owner,
    # beyond its default backlog (1,000; one more is refused with OverloadedError).
    backlog = max(1000, 2 * args.aggregates)
    with store.start(), AppendServer(store, settings, store.codec, max_pending=backlog):
        ids = [f"own-{n}" for n in range(args.aggregates)]
        run = closed_loop(lambda i, e, v: store.append_async(ACCOUNT, i, e, v), ids, args.events)
        rows.append(summary("in the owner process", [run], run["seconds"]))
        print(f"  {rows[-1]}", file=sys.stderr)
        for n in args.clients:
            go, out = ctx.Event(), ctx.Queue()
            ids = [f"c{n}-{k}" for k in range(args.aggregates)]
            procs = [
                ctx.Process(target=remote_client, args=(app_id, ids[k::n], args.events, go, out))
                for k in range(n)
            ]
            for p in procs:
                p.start()
            time.sleep(2)  # let the clients open their producers before the common start
            go.set()
            owner_cpu = time.process_time()
            runs = [out.get(timeout=900) for _ in procs]
            owner_cpu = time.process_time() - owner_cpu
            for p in procs:
                p.join(60)
            # the processes ran at once: the load took as long as the slowest of them
            rows.append(summary(f"{n} client process(es)", runs, max(r["seconds"] for r in runs)))
            rows[-1]["owner_us"] = owner_cpu / sum(r["events"] for r in runs) * 1e6
            print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def grouped_writers(args: argparse.Namespace, ctx: Any, writers: int) -> dict[str, Any]:
    from eventsource.codec import EventCodec
    from eventsource.store.kafka.scaleout.group_store_route import GroupRouter
    from examples.bank.domain import Account

    app_id = f"bench_gw_{uuid.uuid4().hex[:6]}"
    ready, stop = ctx.Queue(), ctx.Event()
    # as in (a): one writer may hold every aggregate's append (else OverloadedError, retried)
    backlog = max(1000, 2 * args.aggregates)
    with tempfile.TemporaryDirectory() as tmp:
        procs = [
            ctx.Process(
                target=grouped_writer,
                args=(app_id, f"w{k}", str(Path(tmp) / f"w{k}"), backlog, ready, stop),
            )
            for k in range(writers)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=300)
        settings = KafkaSettings(application_id=app_id)
        codec = EventCodec.for_events(Account.event_types())
        try:
            with GroupRouter(
                settings,
                codec,
                partitions=PARTITIONS,
                topic_prefix=f"{app_id}.",
                retry_for=120,
            ) as router:
                ids = [f"g-{n}" for n in range(args.aggregates)]
                run = closed_loop(
                    lambda i, e, v: router.append_async(ACCOUNT, i, e, v),
                    ids,
                    args.events,
                    lambda: router.retried,
                )
        finally:
            stop.set()
            for p in procs:
                p.join(120)
    row = summary(f"{writers} grouped writer(s), GroupRouter", [run], run["seconds"])
    row["retried"] = run["retried"]  # sent again while counted (owner moved, busy, unknown)
    print(f"  {row}", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aggregates", type=int, default=2000, help="aggregates at once")
    parser.add_argument("--events", type=int, default=5, help="counted appends per aggregate")
    parser.add_argument("--clients", default="1,2,4", help="client process counts for (a)")
    parser.add_argument("--skip", choices=["routing", "grouped"], help="leave one part out")
    args = parser.parse_args()
    args.clients = [int(n) for n in args.clients.split(",")]
    os.environ["PYTHONPATH"] = str(REPO)
    ctx = multiprocessing.get_context("spawn")
    print(
        f"broker {KafkaSettings().bootstrap_servers}; python {sys.version.split()[0]}; "
        f"{os.cpu_count()} CPUs; {args.aggregates} aggregates x {args.events} one-event "
        "commands, one outstanding per aggregate\n"
    )
    rows = []
    if args.skip != "routing":
        rows += routing_to_one_owner(args, ctx)
    if args.skip != "grouped":
        rows += [grouped_writers(args, ctx, 1), grouped_writers(args, ctx, 3)]
    print(
        "| appending | events/s | p50 ms | p99 ms | CPU µs per event (driving process) "
        "| owner's CPU µs per event |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        # the owner's CPU is known where it is this process: it serves the clients in (a)
        owner = f"{r['owner_us']:.0f}" if "owner_us" in r else "n/a"
        print(
            f"| {r['name']} | {r['rate']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['cpu_us']:.0f} | {owner} |"
        )


if __name__ == "__main__":
    main()
