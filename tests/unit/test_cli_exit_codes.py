"""Every command keeps to the one exit-code table (docs/reference/cli.md#exit-codes).

These cases need no broker: nothing listens on the address, or a socket we hold accepts the
connection and never answers. Cases that need a broker are in tests/e2e.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventsource.cli.app import _register, app
from eventsource.cli.dlq import error_text
from eventsource.errors import BrokerUnreachableError, ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.reach import check_reachable
from eventsource.projection.store import create_read_model_engine, read_model_url

EVENTSOURCE = Path(sys.executable).parent / "eventsource"
BALANCES = "examples.bank.projections:AccountBalances"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    _register()
    yield CliRunner()


KAFKA_COMMANDS = [
    ["topics", "list"],
    ["topics", "describe", "t"],
    ["topics", "create", "t"],
    ["events", "tail", "-t", "t", "--no-follow"],
    ["events", "show", "acc-1", "-t", "t"],
    ["status", BALANCES],
    ["replay", BALANCES],
    ["rebuild", BALANCES],
    ["dlq", "list", BALANCES],
    ["dlq", "replay", BALANCES],
    ["dlq", "discard", BALANCES, "--all"],
    ["dlq", "unpark", BALANCES, "--aggregate", "acc-1"],
]


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=" ".join)
def test_an_unreachable_broker_exits_1_with_one_line_naming_the_address_and_the_fix(
    runner: CliRunner, command: list[str], tmp_path: Path
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    extra = (
        ["-d", db]
        if command[0] in {"status", "replay", "rebuild"}
        or command[1:2] in (["replay"], ["discard"], ["unpark"])
        else []
    )
    if command[0] == "status":
        (tmp_path / "rm.db").touch()  # status never creates one (a missing database: exit 2)
    result = runner.invoke(app, ["--connect-timeout", "0.5", *command, *extra, "-b", address])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: no Kafka broker answered at {address} within 0.5s")
    assert "-b HOST:PORT or EVENTSOURCE_BOOTSTRAP_SERVERS" in lines[0]
    for jargon in ("Local:", "KafkaError{", "TimeoutError", "Traceback"):
        assert jargon not in result.output


def test_the_connect_timeout_is_also_a_setting(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTSOURCE_CONNECT_TIMEOUT_S", "0.3")
    result = runner.invoke(app, ["topics", "list", "-b", f"127.0.0.1:{closed_port()}"])
    assert result.exit_code == 1
    assert "within 0.3s" in result.stderr


def test_the_library_raises_the_same_typed_error() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}")
    with pytest.raises(BrokerUnreachableError, match="no Kafka broker answered at") as info:
        check_reachable(settings, timeout=0.5)
    assert info.value.retriable
    assert "EVENTSOURCE_BOOTSTRAP_SERVERS" in str(info.value)


@pytest.mark.parametrize(
    "command",
    [
        ["status", BALANCES],
        ["replay", BALANCES],
        ["rebuild", BALANCES],
        ["dlq", "replay", BALANCES],
        ["run", BALANCES, "--no-http"],
    ],
    ids=lambda c: c[0] if c[0] != "dlq" else "dlq replay",
)
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://app@db:notaport/app", "URL is not valid"),
        ("mysql://app@db/app", "is not supported"),
    ],
)
def test_a_malformed_database_url_exits_2_before_anything_connects(
    runner: CliRunner, command: list[str], url: str, words: str
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    result = runner.invoke(app, [*command, "-d", url, "-b", address])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and words in result.stderr


def test_ctrl_c_exits_130_and_says_so(tmp_path: Path) -> None:
    # A socket that accepts and never answers: the command is waiting for the broker.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen(
            [str(EVENTSOURCE), "--connect-timeout", "120", "topics", "list", "-b", address],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            silent.settimeout(120)
            conn, _ = silent.accept()  # the command reached the broker check
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
            conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == "interrupted"


def test_postgres_urls_mean_the_psycopg_3_driver() -> None:
    for url in ("postgres://app:pw@db:5432/app", "postgresql://app:pw@db:5432/app"):
        parsed = read_model_url(url)
        assert parsed.drivername == "postgresql+psycopg"
        assert (parsed.host, parsed.port, parsed.database) == ("db", 5432, "app")


def test_a_sqlite_file_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ConfigurationError) as info:
        create_read_model_engine(f"sqlite:///{missing / 'rm.db'}")
    message = str(info.value)
    assert f"directory {missing} does not exist" in message
    assert f"mkdir -p {missing}" in message and "EVENTSOURCE_DATABASE_URL" in message
    assert "sqlalche.me" not in message


def test_the_default_database_directory_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = create_read_model_engine("sqlite:///.eventsource/readmodels.db")
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()
    assert (tmp_path / ".eventsource" / "readmodels.db").is_file()


def test_a_parked_dead_letter_says_why_it_is_there() -> None:
    parked = {"exception": "", "message": "", "stage": "parked"}
    assert error_text(parked) == "parked: an earlier record of this aggregate is a dead letter"
    failed = {"exception": "RuntimeError", "message": "boom", "stage": "handler"}
    assert error_text(failed) == "RuntimeError: boom"
