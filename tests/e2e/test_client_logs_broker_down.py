"""With the broker down, stderr carries only the project's own lines, and only a few.

librdkafka used to write ~600 ``%3|...|FAIL|rdkafka#producer-1| ... Connection refused``
lines to stderr in 30 s. The broker here is a closed port: a socket bound but never
listening, so every connection is refused at once, and nobody else can take the port.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import EVENTSOURCE, REPO, cli_env

pytestmark = pytest.mark.integration

STORE_SCRIPT = """
import logging, sys
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account

if sys.argv[2] == "configured":
    logging.basicConfig(level=logging.INFO)  # an application that shows its logs
store = KafkaEventStore(KafkaSettings(bootstrap_servers=sys.argv[1]), [Account])
try:
    store.start(timeout=8)
except StoreUnavailableError as error:
    print("StoreUnavailableError", error)
finally:
    store.close()
"""


@pytest.fixture
def closed_port() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def is_librdkafka_raw(line: str) -> bool:
    return line.startswith("%") or ("rdkafka#" in line and not line.startswith(("{", "WARNING:")))


def run_store(address: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", STORE_SCRIPT, address, mode],
        cwd=REPO,
        env=cli_env(address),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_library_user_sees_the_typed_error_and_nothing_on_stderr(closed_port: str) -> None:
    result = run_store(closed_port, "plain")

    assert result.stdout.startswith("StoreUnavailableError"), result.stdout + result.stderr
    assert result.stderr == ""


def test_an_application_that_shows_its_logs_gets_at_most_a_warning_per_kind(
    closed_port: str,
) -> None:
    result = run_store(closed_port, "configured")

    assert result.stdout.startswith("StoreUnavailableError"), result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if is_librdkafka_raw(line)], result.stderr
    # Lines of clients that are never polled (an AdminClient's metadata request) are not
    # delivered at all; those that are come through the project's logger, as warnings,
    # one per kind in eight seconds of refused connections from several clients.
    client = [line for line in lines if "eventsource.kafka.client" in line]
    assert all(line.startswith("WARNING:eventsource.kafka.client:") for line in client)
    assert all("Connection refused" in line for line in client)
    assert len(client) <= 2, result.stderr


def test_the_service_logs_an_outage_as_a_few_json_warnings(
    closed_port: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [
            str(EVENTSOURCE),
            "run",
            "examples.bank.projections:AccountBalances",
            "--no-http",
            "-d",
            f"sqlite:///{tmp_path / 'rm.db'}",
        ],
        cwd=REPO,
        env=cli_env(closed_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(10)  # a bounded stretch of outage; the lines are counted over it
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)

    lines = stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is the service's JSON
    # The service may notice the outage first (its own broker probe) or through a client's
    # refused connection; either way a few lines, and the client's are warnings.
    client = [r for r in records if r["logger"] == "eventsource.kafka.client"]
    assert {r["level"] for r in client} <= {"warning"}
    assert {r["kafka_kind"] for r in client} <= {"broker-unreachable"}
    assert len(client) <= 2, stderr
    assert len(records) <= 12, stderr


def test_a_one_shot_command_prints_only_its_own_error(closed_port: str) -> None:
    result = subprocess.run(
        [str(EVENTSOURCE), "topics", "describe", "bank.account.events"],
        cwd=REPO,
        env=cli_env(closed_port),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
