"""SIGKILL the projection runner at random moments; the read model must stay exact.

Like Kafka's own transactions system test: seed many events (some in aborted
transactions), run the runner in a subprocess, kill it with SIGKILL several times while it
works, restart it, let it catch up, then compare the read model with the pure in-memory
fold: per-account event counters and balances expose any record applied twice or skipped,
and the stored checkpoints must equal the partitions' end offsets.

This file is also the child process (``python test_projection_crash.py child ...``) that
the rebalance test starts too.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

CHAOS = bool(os.environ.get("EVENTSOURCE_CHAOS"))
REPO = Path(__file__).resolve().parents[2]


def child_main(argv: list[str]) -> None:
    """Run a (deliberately slowed) AccountBalances runner until SIGTERM."""
    from eventsource.kafka.config import KafkaSettings
    from eventsource.projection import Context, NullListener, ProjectionRunner
    from examples.bank.projections import AccountBalances

    bootstrap, topic, name, database_url, instance, batch_size, delay = argv

    class SlowBalances(AccountBalances):
        def _write(
            self, ctx: Context, delta_cents: int, owner: str | None = None, closed: bool = False
        ) -> None:
            time.sleep(float(delay))  # leaves time to be killed mid-batch
            super()._write(ctx, delta_cents, owner, closed)

    class Say(NullListener):
        def on_assigned(self, partitions: object) -> None:
            print(f"ASSIGNED {partitions}", flush=True)

        def on_batch(self, n_events: int, seconds: float) -> None:
            print(f"BATCH {n_events}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    overrides: dict[str, object] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    if instance != "-":
        overrides["group.instance.id"] = instance
    runner = ProjectionRunner(
        SlowBalances(name=name, topics=[topic]),
        KafkaSettings(bootstrap_servers=bootstrap),
        database_url,
        batch_size=int(batch_size),
        poll_timeout=0.2,
        listener=Say(),
        consumer_overrides=overrides,
    )
    with runner:
        runner.run(stop)
    print("STOPPED", flush=True)


class Child:
    """One runner subprocess; ``assigned`` is set once it owns partitions."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "child", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.assigned = threading.Event()
        self.batches = 0
        self.output: list[str] = []
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.output.append(line)
            if line.startswith("ASSIGNED"):
                self.assigned.set()
            elif line.startswith("BATCH"):
                self.batches += 1

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self._reap(10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self._reap(timeout)

    def _reap(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def tail(self) -> str:
        return "".join(self.output[-30:])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "child":
    child_main(sys.argv[2:])
    sys.exit(0)

# --- the tests (imports below are only needed by the parent) ----------------------------

from eventsource.kafka.config import KafkaSettings  # noqa: E402
from eventsource.projection import projection_status  # noqa: E402
from eventsource.projection.checkpoints import checkpoints_table  # noqa: E402
from eventsource.projection.store import create_read_model_engine, projections_table  # noqa: E402
from eventsource.testing.seed import SeedEvent, fold, seed_events  # noqa: E402
from examples.bank.domain import Account  # noqa: E402
from examples.bank.projections import AccountBalances, sample_history  # noqa: E402

pytestmark = pytest.mark.integration


def assert_exact(
    projection: AccountBalances,
    database_url: str,
    history: list[SeedEvent],
    settings: KafkaSettings,
) -> None:
    """Read model == fold; checkpoints == end offsets."""
    from sqlalchemy import select

    engine = create_read_model_engine(database_url)
    try:
        with engine.connect() as conn:
            got = {
                r.account_id: (r.owner, r.balance_cents, r.events, r.closed)
                for r in conn.execute(select(projection.accounts))
            }
    finally:
        engine.dispose()
    expected = {
        k: (a.owner, int(a.balance * 100), a.version, a.closed)
        for k, a in fold(Account, history).items()
    }
    duplicated = {k for k in got if k in expected and got[k][2] > expected[k][2]}
    skipped = {k for k in expected if got.get(k, (None, 0, 0, False))[2] < expected[k][2]}
    assert not duplicated, f"records applied twice for {sorted(duplicated)[:5]}"
    assert not skipped, f"records skipped for {sorted(skipped)[:5]}"
    assert got == expected
    assert sum(v[2] for v in got.values()) == len(history)
    statuses = projection_status(projection, settings, database_url)
    assert [(s.checkpoint, s.lag) for s in statuses] == [(s.end_offset, 0) for s in statuses]


def run_with_kills(
    *,
    kafka_settings: KafkaSettings,
    topic: str,
    projection: AccountBalances,
    database_url: str,
    total: int,
    kills: int,
    delay: str,
    batch_size: int,
    seed: int,
) -> None:
    rng = random.Random(seed)
    history = sample_history(accounts=200, events=total, seed=seed)
    half = total // 2
    seed_events(kafka_settings, topic, history[:half], transaction_size=1000)
    # aborted writes in the middle of the topic: must never be applied
    seed_events(
        kafka_settings,
        topic,
        sample_history(50, 2000, seed=seed + 1),
        commit=False,
        transaction_size=500,
    )
    seed_events(kafka_settings, topic, history[half:], transaction_size=1000)
    args = (
        kafka_settings.bootstrap_servers,
        topic,
        projection.name,
        database_url,
        "crash-0",
        str(batch_size),
        delay,
    )
    for kill in range(kills):
        child = Child(*args)
        try:
            assert child.assigned.wait(60), f"runner never got partitions:\n{child.tail()}"
            # kill at a random moment while it works (after a random number of batches)
            target = child.batches + rng.randint(1, 6)
            wait_until(
                lambda c=child, t=target: c.batches >= t or c.process.poll() is not None,
                60,
                "batches",
            )
            time.sleep(rng.uniform(0, 0.05))
            assert child.process.poll() is None, (
                f"runner exited early (kill {kill}):\n{child.tail()}"
            )
        finally:
            child.kill()
    left = sum(s.lag for s in projection_status(projection, kafka_settings, database_url))
    assert left > 0, "every kill came after the work was done: the test proved nothing"
    child = Child(*args)
    try:
        wait_until(
            lambda: all(
                s.lag == 0 for s in projection_status(projection, kafka_settings, database_url)
            ),
            120,
            "the restarted runner to catch up",
        )
    finally:
        assert child.terminate() == 0, child.tail()
    assert_exact(projection, database_url, history, kafka_settings)


@pytest.mark.slow  # make test: test_projection_rebalance SIGKILLs runners to the exact fold,
# test_projection_runner skips aborted transactions; make chaos runs this one too
def test_sigkilled_runner_restarts_to_the_exact_fold(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    tmp_path: Path,
    unique_name: str,
) -> None:
    projection = AccountBalances(name="p_" + unique_name[-8:], topics=[create_topic(partitions=3)])
    run_with_kills(
        kafka_settings=kafka_settings,
        topic=projection.topics[0],
        projection=projection,
        database_url=str(tmp_path / "crash.db"),
        total=12_000,
        kills=4,
        delay="0.0003",
        batch_size=200,
        seed=1,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def chaos_database(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "chaos.db")
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    name = "p_" + unique_name[-8:]
    engine = create_read_model_engine(url)  # the server is shared: leave nothing behind
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}_accounts"')
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_v1_accounts"')
        for system in (checkpoints_table, projections_table):
            conn.execute(system.delete().where(system.c.projection == name))
    engine.dispose()


@pytest.mark.slow
@pytest.mark.skipif(not CHAOS, reason="set EVENTSOURCE_CHAOS=1 (make chaos)")
def test_chaos_twenty_kills_over_100k_events(
    kafka_settings: KafkaSettings,
    create_topic: Callable[..., str],
    chaos_database: str,
    unique_name: str,
) -> None:
    projection = AccountBalances(name="p_" + unique_name[-8:], topics=[create_topic(partitions=6)])
    run_with_kills(
        kafka_settings=kafka_settings,
        topic=projection.topics[0],
        projection=projection,
        database_url=chaos_database,
        total=100_000,
        kills=20,
        delay="0.00005",
        batch_size=500,
        seed=2,
    )
