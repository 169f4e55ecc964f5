"""The edges of the projection commands: read-only commands create nothing, an
interrupted replay resumes, and a running service follows a blue/green swap."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from eventsource.kafka.config import KafkaSettings
from tests.e2e.conftest import (
    BALANCES,
    EVENTSOURCE,
    Cli,
    cli_env,
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


def _checkpoint_total(db: str, pname: str) -> int:
    try:
        return sum(read_checkpoints(db, pname).values())
    except OperationalError:  # the replay has not created its tables yet
        return 0


def test_an_interrupted_replay_says_how_far_it_got_and_keep_resumes_it_exactly(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 20_000)
    records = read_topic(kafka_settings, topic)
    total = sum(len(rows) for rows in records.values())
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = [BALANCES, "--name", pname, "-t", topic, "-d", db]
    replay = subprocess.Popen(
        [str(EVENTSOURCE), "replay", *where, "--batch-size", "10", "--no-progress"],
        cwd=tmp_path,
        env=cli_env(cli.bootstrap_servers),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _checkpoint_total(db, pname) > 500 or replay.poll() is not None, 120)
        replay.send_signal(signal.SIGINT)
        _, err = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode != 0, f"the signal came after the replay was done: {err}"
    assert replay.returncode == 130, err
    assert "interrupted after" in err and "records" in err, err
    assert "--keep" in err, err
    stopped_at = _checkpoint_total(db, pname)
    assert stopped_at < total, "the signal came after the replay was done"

    resumed = cli.json("replay", *where, "--keep")
    assert resumed["events"] == total - stopped_at  # only what was left
    assert read_balances(db, pname) == expected_balances(records)
