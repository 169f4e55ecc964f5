"""A new user's first hour with the installed command, on the real broker and PostgreSQL:
the same cause gives the same exit code, start-up misconfiguration stops ``run`` with one
line, a broker that is down is retried and reported by ``/readyz``."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from eventsource.kafka.config import KafkaSettings
from tests.e2e.conftest import BALANCES, EVENTSOURCE, Cli, Service, cli_env, parsed, wait_for
from tests.e2e.helpers import seed_bank

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_a_missing_topic_exits_2_with_the_same_words_in_every_command(
    cli: Cli, pname: str, tmp_path: Path
) -> None:
    missing = f"{pname}.nope.events"
    # status never creates a database; replay (side by side with it) gets one of its own
    (tmp_path / "rm.db").touch()
    (tmp_path / "replay.db").touch()
    db, replay_db = f"sqlite:///{tmp_path / 'rm.db'}", f"sqlite:///{tmp_path / 'replay.db'}"
    commands = (
        ["topics", "describe", missing],
        ["events", "tail", "-t", missing, "--no-follow"],
        ["events", "show", "acc-1", "-t", missing],
        ["status", BALANCES, "--name", pname, "-t", missing, "-d", db],
        ["replay", BALANCES, "--name", pname, "-t", missing, "-d", replay_db],
    )
    for args, result in zip(commands, cli.all(*commands), strict=True):
        assert result.returncode == 2, (args, result.stderr)
        line = one_error_line(result)
        assert f"topic '{missing}'" in line and "does not exist" in line, args
        assert "eventsource topics list" in line, args


def test_topics_list_shows_created_topics_with_a_header(cli: Cli, pname: str) -> None:
    topic = f"{pname}.orders.events"
    cli.json("topics", "create", topic, "--partitions", "2")
    as_json, human = cli.all(["topics", "list", "--json"], ["topics", "list"], COLUMNS="200")
    listed = parsed(as_json)
    assert {"topic": topic, "partitions": 2} in listed
    assert not any(row["topic"].startswith("__") for row in listed)
    assert human.returncode == 0
    assert "topic" in human.stdout.splitlines()[1] and "partitions" in human.stdout
    assert topic in human.stdout


def test_an_unreachable_broker_fails_in_the_connect_timeout_with_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    (tmp_path / "rm.db").touch()  # status never creates a database
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    result = cli("--connect-timeout", "1", "status", BALANCES, "-d", db, "-b", address)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"no Kafka broker answered at {address} within 1s" in line
    assert "-b HOST:PORT or EVENTSOURCE_BOOTSTRAP_SERVERS" in line


def test_replay_progress_counts_offsets_and_never_shows_an_unknown_total(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 300)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    result = cli("replay", BALANCES, "--name", pname, "-t", topic, "-d", db, COLUMNS="200")
    assert result.returncode == 0, result.stderr
    assert "offsets" in result.stderr and "offsets/s" in result.stderr
    assert "/?" not in result.stderr and "ev/s" not in result.stderr
    assert "300 events" in result.stdout


def test_dlq_list_text_has_a_header_row(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    from tests.e2e.test_cli_dlq import FLAKY

    (tmp_path / "flaky_bank.py").write_text(FLAKY)
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 600)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    replayed = cli.json(
        "replay", "flaky_bank:FlakyBalances", "--name", pname, "-t", topic, "-d", db, BANK_BUG="1"
    )
    assert replayed["dead_lettered"] > 0
    human = cli("dlq", "list", "flaky_bank:FlakyBalances", "--name", pname, COLUMNS="250")
    lines = human.stdout.splitlines()
    assert lines[0].split() == [
        "DLQ",
        "SOURCE",
        "AGGREGATE",
        "TYPE",
        "STAGE",
        "DEAD-LETTERED",
        "AT",
        "ERROR",
    ]
    assert all("RuntimeError: bug: cannot withdraw" in line for line in lines[1:-1])
    assert "parked  :" not in human.stdout
    assert lines[-1] == f"{replayed['dead_lettered']} dead letter(s) in {pname}.dlq"


@pytest.mark.parametrize("case", ["missing topic", "missing directory", "refused login"])
def test_run_exits_2_with_one_clear_line_on_permanent_misconfiguration(
    bootstrap_servers: str,
    kafka_settings: KafkaSettings,
    postgres_url: str,
    pname: str,
    tmp_path: Path,
    case: str,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 50)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    if case == "missing topic":
        topic, words = f"{pname}.nope.events", "does not exist"
    elif case == "missing directory":
        db, words = f"sqlite:///{tmp_path / 'no' / 'dir' / 'rm.db'}", "mkdir -p"
    else:
        db = (
            make_url(postgres_url)
            .set(username="nobody_e2e", password="wrong")
            .render_as_string(hide_password=False)
        )
        words = "refused the login"
    result = subprocess.run(
        [str(EVENTSOURCE), "run", BALANCES, "--name", pname, "-t", topic, "-d", db, "--no-http"],
        cwd=tmp_path,
        env=cli_env(bootstrap_servers),
        capture_output=True,
        text=True,
        timeout=300,  # a loaded machine's broker may be retried (backoff) before the answer
        check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [json.loads(line) for line in result.stderr.splitlines() if '"level": "error"' in line]
    # The last error is the one line that says why (a loaded machine may first log a slow
    # broker as unreachable: that is retried).
    assert errors[-1]["event"] == "configuration error", result.stderr[-3000:]
    assert words in errors[-1]["error"] and "sqlalche.me" not in errors[-1]["error"]
    assert "wrong" not in result.stderr  # the password never reaches the logs
    # Every Kafka client was destroyed before the exit (none left to race shutdown).
    assert "inside the Kafka client" not in result.stderr, result.stderr[-3000:]


def test_run_retries_a_broker_that_is_down_and_readyz_names_it(
    service: Callable[..., Service], pname: str, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    svc = service(BALANCES, "--name", pname, "-d", db, "-b", address)

    def reported() -> bool:
        try:
            error = svc.readiness()["projections"][pname]["error"]
        except (OSError, KeyError, ValueError):
            return False
        return bool(error) and f"no Kafka broker answered at {address}" in error

    wait_for(reported, 90, svc.describe)
    status, _ = svc.get("/readyz")
    assert status == 503
    assert svc.proc.poll() is None  # still running: a broker that is down is retried
    assert svc.stop() == 0


def test_database_errors_name_the_database_and_the_fix(
    cli: Cli, kafka_settings: KafkaSettings, postgres_url: str, pname: str
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 20)
    where = ["--name", pname, "-t", topic]
    down = make_url(postgres_url).set(host="127.0.0.1", port=closed_port(), query={})
    stranger = make_url(postgres_url).set(username="nobody_e2e", password="wrong-pw")
    plain = postgres_url.replace("postgresql+psycopg://", "postgres://", 1)
    result, refused, accepted = cli.all(
        ["status", BALANCES, *where, "-d", down.render_as_string(hide_password=False)],
        ["replay", BALANCES, *where, "-d", stranger.render_as_string(hide_password=False)],
        ["replay", BALANCES, *where, "-d", plain],
    )
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"PostgreSQL {down.render_as_string(hide_password=True)} is unavailable" in line
    assert "EVENTSOURCE_DATABASE_URL" in line and "sqlalche.me" not in line

    assert refused.returncode == 2
    line = one_error_line(refused)
    assert "refused the login" in line and "check the user and password" in line
    assert "wrong-pw" not in refused.stderr

    assert accepted.returncode == 0, accepted.stderr
