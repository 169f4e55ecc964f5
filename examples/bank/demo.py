"""The bank demo: ``make demo`` or ``python -m examples.bank.demo``.

1. Finds a Kafka broker (``EVENTSOURCE_BOOTSTRAP_SERVERS``, else 127.0.0.1:9092, else it
   starts the local launcher's broker there).
2. Appends a few thousand commands (open, deposit, withdraw) to ``Account`` aggregates
   through ``KafkaEventStore`` and ``Repository``: expected versions, group commits.
3. Runs the ``AccountBalances`` projection into SQLite until it has caught up, and prints
   the balances and the lag.
4. Replays the projection from the beginning and shows it reproduces the same balances.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine, text

from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.launcher import LocalKafka, wait_for_broker
from eventsource.projection import ProjectionRunner, projection_status
from eventsource.projection.replay import ReplayProgress, replay
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.repository import Repository
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances

console = Console()


def find_broker() -> tuple[str, bool]:
    """Bootstrap servers of a running broker; True when this demo started it."""
    configured = os.environ.get("EVENTSOURCE_BOOTSTRAP_SERVERS")
    if configured:
        wait_for_broker(configured, timeout=30)
        return configured, False
    try:
        wait_for_broker("127.0.0.1:9092", timeout=3)
        return "127.0.0.1:9092", False
    except Exception:  # nothing answers: start the project's own broker
        console.print("No Kafka broker answers on 127.0.0.1:9092: starting one (Java + Maven)...")
        status = LocalKafka(port=9092, controller_port=9093).start()
        return status.bootstrap_servers, status.started


def run_commands(
    accounts: Repository[Account], n_accounts: int, n_commands: int, id_prefix: str = "acc-"
) -> int:
    """Open ``n_accounts`` accounts, then deposits and withdrawals: ``n_commands`` in all."""
    rng = random.Random(42)
    ids = [f"{id_prefix}{i:04d}" for i in range(n_accounts)]
    plan: dict[str, list[int]] = {i: [] for i in ids}
    for _ in range(n_commands - n_accounts):
        plan[rng.choice(ids)].append(rng.randint(-40_000, 60_000))

    def one_account(account_id: str) -> int:
        account = accounts.create(account_id)
        account.open(owner=f"Customer {account_id[-4:]}")
        accounts.save(account)
        done = 1
        for cents in plan[account_id]:
            amount = Decimal(abs(cents) or 1) / 100
            if cents < 0 and amount <= account.balance:
                account.withdraw(amount)
            else:
                account.deposit(amount)
            accounts.save(account)  # expected version = the version it was loaded at
            done += 1
        return done

    # Accounts in parallel (each one's commands in order): the store group-commits them.
    with ThreadPoolExecutor(max_workers=64) as pool:
        return sum(pool.map(one_account, ids))


def balances(database_url: str) -> dict[str, tuple[str, int, int]]:
    """account -> (owner, balance in cents, events) from the projection's live view."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT account_id, owner, balance_cents, events FROM balances_accounts")
            ).all()
    finally:
        engine.dispose()
    return {r[0]: (r[1], int(r[2]), int(r[3])) for r in rows}


def show_balances(title: str, model: dict[str, tuple[str, int, int]], top: int = 8) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("account")
    table.add_column("owner")
    table.add_column("balance", justify="right")
    table.add_column("events", justify="right")
    richest = sorted(model.items(), key=lambda kv: (-kv[1][1], kv[0]))[:top]
    for account_id, (owner, cents, events) in richest:
        table.add_row(account_id, owner, f"{cents / 100:,.2f}", str(events))
    total = sum(v[1] for v in model.values())
    table.add_section()
    table.add_row(
        f"{len(model)} accounts", "", f"{total / 100:,.2f}", str(sum(v[2] for v in model.values()))
    )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=Path(".eventsource/demo"))
    parser.add_argument(
        "--topic-prefix",
        help="prefix of the events topic, e.g. 'compose.' for compose.bank.account.events "
        "(default: demo<timestamp>., a new topic per run); each run then opens new "
        "account ids, so runs into one topic never collide",
    )
    parser.add_argument(
        "--append-only",
        action="store_true",
        help="append the commands and stop: no projection, no replay (docker-compose's appender)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    run_id = datetime.now(UTC).strftime("demo%Y%m%d%H%M%S")
    prefix = f"{run_id}." if args.topic_prefix is None else args.topic_prefix
    # A shared topic keeps every run's accounts: a run opens new ones (acc-<6 hex>-0000, ...).
    id_prefix = "acc-" if args.topic_prefix is None else f"acc-{uuid.uuid4().hex[:6]}-"

    servers, started_broker = find_broker()
    console.rule(f"[bold]eventsource bank demo[/bold]  broker {servers}  run {run_id}")
    settings = KafkaSettings(bootstrap_servers=servers, application_id=run_id)

    t0 = time.monotonic()
    with KafkaEventStore(settings, [Account], partitions=6, topic_prefix=prefix) as store:
        topic = store.topic_for(Account.aggregate_type)
        accounts = Repository(store, Account)
        done = run_commands(accounts, args.accounts, args.commands, id_prefix)
        sample = accounts.get(f"{id_prefix}0007")
    seconds = time.monotonic() - t0
    console.print(
        f"1. appended {done} commands to {topic} in {seconds:.1f}s "
        f"({done / seconds:,.0f} commands/s); {sample.id} is at version {sample.version}, "
        f"balance {sample.balance}"
    )
    if args.append_only:
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    db_file = (args.workdir / f"{run_id}.db").absolute()
    database_url = f"sqlite:///{db_file}"

    projection = AccountBalances(topics=[topic])
    t0 = time.monotonic()
    with ProjectionRunner(projection, settings, database_url) as runner:
        stats = runner.run_until_caught_up(timeout=120)
        lag = runner.status()
    seconds = time.monotonic() - t0
    console.print(
        f"2. projected {stats.events} events into {db_file.name} in {seconds:.1f}s; "
        f"lag per partition: {[s.lag for s in lag]} (total {sum(s.lag for s in lag)})"
    )
    first = balances(database_url)
    show_balances("AccountBalances (richest accounts)", first)

    with Progress(
        TextColumn("3. replay from the beginning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:,.0f} ev/s  lag {task.fields[lag]:,}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("replay", total=None, rate=0.0, lag=0)

        def report(p: ReplayProgress) -> None:
            bar.update(
                task, completed=p.events_done, total=p.events_total, rate=p.rate, lag=p.lag_left
            )

        result = replay(projection, settings, database_url, progress=report)
    second = balances(database_url)
    same = second == first
    verdict = "[green]the same balances[/green]" if same else "[red]DIFFERENT balances[/red]"
    console.print(f"   replayed {result.events} events: {verdict}")
    show_balances("AccountBalances after the replay", second)
    status_lag = sum(s.lag for s in projection_status(projection, settings, database_url))
    console.print(f"   lag after the replay: {status_lag}")

    account = "examples.bank.domain:Account"
    proj = "examples.bank.projections:AccountBalances"
    where = f"-t {topic} -d {database_url}"
    query = "select * from balances_accounts limit 5"
    console.rule("[bold]Try next[/bold] (from the repository root)")
    console.print(
        f"  .venv/bin/eventsource events tail -t {topic} -a {account} --from beginning\n"
        f"  .venv/bin/eventsource events show {sample.id} -t {topic} -a {account}\n"
        f"  .venv/bin/eventsource status {proj} {where}\n"
        f"  .venv/bin/eventsource run {proj} {where}   "
        "# then curl localhost:9464/metrics\n"
        f"  .venv/bin/eventsource rebuild {proj} {where} --projection-version 2\n"
        f"  sqlite3 {db_file} '{query}'",
        highlight=False,
        soft_wrap=True,
    )
    if started_broker:
        console.print("  make kafka-down   # stops the broker this demo started")
    console.print(f"Done in {time.monotonic() - started:.0f}s.")
    return 0 if same and status_lag == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
