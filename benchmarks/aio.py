"""Async benchmark: ``eventsource.aio`` against the threaded ``append_async``, same run.

Run as a script (``python benchmarks/aio.py``) against the broker in
``EVENTSOURCE_BOOTSTRAP_SERVERS`` (default 127.0.0.1:9092). Numbers are reported, never
asserted. Prints a markdown table.

1. threaded: :func:`benchmarks.append.store_loop`, a closed loop of 1-event appends with
   ``--outstanding`` (1,000) in flight, completions read from a queue by one thread;
2. asyncio: the same closed loop as ``--outstanding`` tasks on one event loop, each
   awaiting its append through :func:`eventsource.aio.await_future` (the bridge
   ``AsyncRepository.save`` uses), and once more through ``AsyncRepository.save`` itself
   (which also runs the aggregate's ``deposit`` and ``mark_committed``); the two are run
   alternately, ``--rounds`` times, and the best of each is kept (the machine is shared).
   Every timed run starts after a full garbage collection, so that none pays for the
   garbage of the one before. When ``uvloop`` is installed (the ``uvloop`` extra), the
   bridge loop runs once more per round on a uvloop event loop: reported beside the
   headline, which is the default asyncio loop's;
3. HTTP (unless ``--no-http``): the bank example (``examples/bank/api.py``) under uvicorn
   with one worker (on the default asyncio loop, ``--loop asyncio``); ``--clients``
   concurrent httpx clients post deposits to ``--accounts`` accounts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.append import ACCOUNT, DEPOSIT, PARTITIONS, store_loop
from eventsource.aio import AsyncRepository, await_future
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account, AccountOpened

REPO = Path(__file__).resolve().parents[1]


async def async_loop(store: KafkaEventStore, events: int, tasks: int) -> float:
    """Events/s of ``tasks`` coroutines, each appending 1-event commands to its aggregate."""
    ids = [f"acc-{uuid.uuid4().hex[:12]}" for _ in range(tasks)]
    await asyncio.gather(
        *(await_future(store.append_async(ACCOUNT, i, [AccountOpened(owner=i)], 0)) for i in ids)
    )
    per_task = events // tasks

    async def appender(aggregate_id: str) -> None:
        version = 1
        for _ in range(per_task):
            result = await await_future(
                store.append_async(ACCOUNT, aggregate_id, [DEPOSIT], version)
            )
            version = result.version

    started = time.perf_counter()
    await asyncio.gather(*(appender(i) for i in ids))
    return per_task * tasks / (time.perf_counter() - started)


async def repository_loop(store: KafkaEventStore, events: int, tasks: int) -> float:
    """Events/s of the same loop through ``AsyncRepository.save`` (domain code included)."""
    accounts = AsyncRepository(store, Account)
    opened = []
    for _ in range(tasks):
        account = accounts.create(f"acc-{uuid.uuid4().hex[:12]}")
        account.open(owner="bench")
        opened.append(account)
    await accounts.save_all(opened)
    per_task = events // tasks

    async def depositor(account: Account) -> None:
        for _ in range(per_task):
            account.deposit(DEPOSIT.amount)
            await accounts.save(account)

    started = time.perf_counter()
    await asyncio.gather(*(depositor(a) for a in opened))
    return per_task * tasks / (time.perf_counter() - started)


async def http_deposits(base_url: str, accounts: int, clients: int, requests: int) -> float:
    """Requests/s of ``clients`` concurrent clients posting deposits (all must be 200)."""
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        locations = []
        for _ in range(accounts):
            opened = await client.post("/accounts", json={"owner": "bench"})
            assert opened.status_code == 201, opened.text
            locations.append(opened.headers["Location"])
        per_client = requests // clients

        async def one_client(n: int) -> None:
            for k in range(per_client):
                location = locations[(n + k * clients) % len(locations)]
                response = await client.post(f"{location}/deposits", json={"amount": "1.00"})
                assert response.status_code == 200, response.text

        started = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        return per_client * clients / (time.perf_counter() - started)


def run_on_uvloop(main: Coroutine[Any, Any, float]) -> float:
    """``asyncio.run(main)`` on a uvloop event loop (the optional ``uvloop`` extra)."""
    import uvloop  # optional: imported only when installed

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_api(
    settings: KafkaSettings, prefix: str, tmp: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        EVENTSOURCE_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        EVENTSOURCE_APPLICATION_ID=f"{settings.application_id}-api",
        EVENTSOURCE_DATABASE_URL=f"sqlite:///{tmp / 'rm.db'}",
        BANK_TOPIC_PREFIX=prefix,
        PYTHONPATH=str(REPO),
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "examples.bank.api:create_app"]
    command += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    # uvicorn picks uvloop by itself when it is installed: the figure stays the default loop's.
    command += ["--loop", "asyncio"]
    # Idle pooled connections must outlive a slow moment of a shared machine: uvicorn's
    # default (5 s) closes them under the client, which then fails with ReadError.
    command += ["--timeout-keep-alive", "120"]
    proc = subprocess.Popen(command, cwd=REPO, env=env)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/openapi.json", timeout=2).status_code == 200:
                return proc, base_url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the bank API did not start within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000, help="events per throughput run")
    parser.add_argument("--outstanding", type=int, default=1_000, help="appends / tasks in flight")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each loop")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP clients")
    parser.add_argument("--requests", type=int, default=6_400, help="HTTP deposits in all")
    parser.add_argument("--no-http", action="store_true", help="the throughput loops only")
    args = parser.parse_args()
    with_uvloop = importlib.util.find_spec("uvloop") is not None
    run = f"bench_{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(
        bootstrap_servers=os.environ.get("EVENTSOURCE_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        application_id=run,
    )
    threaded: list[float] = []
    bridged: list[float] = []
    repository: list[float] = []
    on_uvloop: list[float] = []
    cpu: dict[str, float] = {}  # CPU µs of this process (every thread) per event, lowest seen
    appended = args.events + args.outstanding  # the opening appends count too

    def timed(name: str, rates: list[float], call: Callable[[], float]) -> None:
        gc.collect()
        started = time.process_time()
        rates.append(call())
        used = (time.process_time() - started) / appended * 1e6
        cpu[name] = min(cpu.get(name, used), used)

    with KafkaEventStore(
        settings, [Account], partitions=PARTITIONS, topic_prefix=f"{run}.aio."
    ) as store:
        for _ in range(args.rounds):
            timed("threaded", threaded, lambda: store_loop(store, args.events, args.outstanding))
            timed(
                "bridge",
                bridged,
                lambda: asyncio.run(async_loop(store, args.events, args.outstanding)),
            )
            timed(
                "repository",
                repository,
                lambda: asyncio.run(repository_loop(store, args.events, args.outstanding)),
            )
            if with_uvloop:
                timed(
                    "uvloop",
                    on_uvloop,
                    lambda: run_on_uvloop(async_loop(store, args.events, args.outstanding)),
                )

    best_threaded, best_bridged, best_repository = max(threaded), max(bridged), max(repository)
    print(f"\n### Async benchmark ({args.events:,} events, broker {settings.bootstrap_servers})\n")
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| threaded append_async, 1-event commands, {args.outstanding:,} outstanding "
        f"(events/s, best of {args.rounds}) | {best_threaded:,.0f} |"
    )
    print(
        f"| asyncio, {args.outstanding:,} tasks awaiting append_async through the bridge "
        f"(events/s) | {best_bridged:,.0f} |"
    )
    print(
        f"| **ratio asyncio / threaded (goal >= 0.9)** | **{best_bridged / best_threaded:.2f}** |"
    )
    print(
        f"| asyncio, {args.outstanding:,} tasks through AsyncRepository.save, domain code "
        f"included (events/s) | {best_repository:,.0f} |"
    )
    print(f"| ratio AsyncRepository.save / threaded | {best_repository / best_threaded:.2f} |")
    print(
        "| CPU of the process per event, threaded / bridge / repository (µs) | "
        f"{cpu['threaded']:.1f} / {cpu['bridge']:.1f} / {cpu['repository']:.1f} |"
    )
    if on_uvloop:
        print(
            f"| optional: the bridge loop on uvloop (events/s; ratio; CPU µs per event) | "
            f"{max(on_uvloop):,.0f}; {max(on_uvloop) / best_threaded:.2f}; {cpu['uvloop']:.1f} |"
        )
    rounds = zip(threaded, bridged, repository, on_uvloop or [0.0] * args.rounds, strict=True)
    print(
        "\n(every run: "
        + ", ".join(
            f"threaded {t:,.0f} / bridge {b:,.0f} / repository {r:,.0f}"
            + (f" / uvloop {u:,.0f}" if on_uvloop else "")
            for t, b, r, u in rounds
        )
        + ")",
        flush=True,
    )
    if args.no_http:
        return

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / run
    tmp.mkdir(parents=True, exist_ok=True)
    proc, base_url = serve_api(settings, f"{run}.api.", tmp)
    try:
        before = cpu_seconds(proc.pid)
        http = asyncio.run(http_deposits(base_url, 200, args.clients, args.requests))
        server_cpu = (cpu_seconds(proc.pid) - before) / (args.requests + 200) * 1e3
    finally:
        proc.terminate()
        proc.wait(30)

    print("\n| measure | value |\n|---|---|")
    print(
        f"| HTTP deposits, bank example, 1 uvicorn worker, {args.clients} clients on the "
        f"same machine (requests/s) | {http:,.0f} |"
    )
    print(f"| server CPU per request (ms) | {server_cpu:.2f} |")


if __name__ == "__main__":
    main()
