"""The edges of the projection commands: read-only commands create nothing, an
interrupted replay resumes, and a running service follows a blue/green swap."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.testing.seed import SeedEvent, seed_events
from examples.bank.domain import MoneyDeposited
from tests.e2e.conftest import (
    BALANCES,
    EVENTSOURCE,
    Cli,
    Service,
    cli_env,
    parsed,
    read_balances,
    read_checkpoints,
    wait_for,
)
from tests.e2e.helpers import expected_balances, read_topic, seed_bank

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("form", ["url", "path"])
def test_status_of_a_missing_database_is_a_usage_error_and_creates_nothing(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path, form: str
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 30)
    missing = tmp_path / "nowhere" / "rm.db"
    missing.parent.mkdir()
    database = f"sqlite:///{missing}" if form == "url" else str(missing)
    out = cli("status", BALANCES, "--name", pname, "-t", topic, "-d", database)
    assert out.returncode == 2, out.stderr
    assert str(missing) in out.stderr
    assert "does not exist" in out.stderr
    assert list(missing.parent.iterdir()) == []


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


GATED = "tests.e2e.gated_replay:GatedBalances"


def test_an_interrupted_replay_says_how_far_it_got_and_keep_resumes_it_exactly(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 20_000)
    records = read_topic(kafka_settings, topic)
    total = sum(len(rows) for rows in records.values())
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-t", topic, "-d", db]
    # The same tables as BALANCES, but its handlers stop at the 5,000th event until the
    # signal comes: the replay is interrupted mid-way however fast or loaded the machine.
    gate = tmp_path / "gate"
    gate.mkdir()
    replay = subprocess.Popen(
        [str(EVENTSOURCE), "replay", GATED, *where, "--batch-size", "10", "--no-progress"],
        cwd=tmp_path,
        env=cli_env(cli.bootstrap_servers, GATED_REPLAY_DIR=str(gate), GATED_REPLAY_AFTER="5000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test run started in the background inherits SIGINT ignored: undo that, as a
        # terminal's Ctrl-C would reach the command
        preexec_fn=_default_sigint,
    )
    try:
        wait_for(lambda: (gate / "reached").exists() or replay.poll() is not None, 120)
        assert replay.poll() is None, replay.communicate()[1]
        replay.send_signal(signal.SIGINT)
        _, err = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 130, err
    assert "interrupted after" in err and "records" in err, err
    assert "--keep" in err, err

    # What the interrupted replay committed is the fold of the events before its
    # checkpoints (offsets, which count transaction markers too: compare events).
    stopped_at = {p: o for (_, p), o in read_checkpoints(db, pname).items()}
    applied = sum(1 for p, rows in records.items() for row in rows if row[0] < stopped_at[p])
    assert 0 < applied < 5000
    assert read_balances(db, pname) == expected_balances(records, stopped_at)

    resumed = cli.json("replay", BALANCES, *where, "--keep")
    assert resumed["events"] == total - applied  # only what was left, each once
    assert read_balances(db, pname) == expected_balances(records)


def test_a_running_service_follows_a_blue_green_swap_and_status_shows_every_version(
    cli: Cli,
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 600)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-t", topic, "-d", db]
    svc = service(BALANCES, *where)
    wait_for(lambda: svc.caught_up(pname), 90, svc.describe)
    assert svc.readiness()["projections"][pname]["version"] == 1

    rebuilt = cli.json("rebuild", BALANCES, *where, "--projection-version", "2")
    assert (rebuilt["previous_version"], rebuilt["swapped"]) == (1, True)
    # The service switches to version 2 by itself, and keeps the live view current.
    wait_for(
        lambda: svc.readiness()["projections"][pname].get("version") == 2 and svc.caught_up(pname),
        90,
        svc.describe,
    )
    some = next(rows[0][1] for rows in read_topic(kafka_settings, topic).values() if rows)
    seed_events(kafka_settings, topic, [SeedEvent(some, MoneyDeposited(amount=5))] * 20)
    records = read_topic(kafka_settings, topic)
    total = sum(len(rows) for rows in records.values())
    wait_for(lambda: sum(read_checkpoints(db, pname, 2).values()) >= total, 90, svc.describe)
    assert read_balances(db, pname) == expected_balances(records)  # the live view
    status, body = svc.get("/readyz")
    assert status == 200, body

    every, one = cli.all(
        ["status", BALANCES, *where, "--json"],
        ["status", BALANCES, *where, "--projection-version", "2", "--json"],
    )
    rows, only = parsed(every), parsed(one)
    assert {(r["version"], r["live"]) for r in rows} == {(1, False), (2, True)}
    assert {r["version"] for r in only} == {2}
    assert svc.stop() == 0

    pinned = service(BALANCES, *where, "--projection-version", "1")
    wait_for(
        lambda: (pinned.readiness()["projections"][pname].get("not_live") or "") != "",
        90,
        pinned.describe,
    )
    status, body = pinned.get("/readyz")
    assert status == 503
    assert "version 1 is not live (version 2 is)" in body
    assert pinned.stop() == 0
