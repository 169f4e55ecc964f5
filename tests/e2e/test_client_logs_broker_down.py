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
from dataclasses import dataclass

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


OUTAGE_S = 10
"""How long the service runs into the outage; its lines are counted over this stretch."""


def popen(command: list[str], address: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=cli_env(address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class Outage:
    """This module's processes, all started at once against one closed port: each spends
    seconds in the outage, side by side they take the time of the longest."""

    plain: subprocess.Popen[str]  #: a library user's store start, logging not configured
    configured: subprocess.Popen[str]  #: the same in an application that shows its logs
    service: subprocess.Popen[str]  #: ``eventsource run``
    service_started: float
    one_shot: subprocess.Popen[str]  #: ``eventsource topics describe``


def finished(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    database = tmp_path_factory.mktemp("outage") / "rm.db"
    with socket.socket() as sock:  # bound, never listening: every connection is refused
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        store = [sys.executable, "-c", STORE_SCRIPT, address]
        run = [str(EVENTSOURCE), "run", "examples.bank.projections:AccountBalances", "--no-http"]
        describe = [str(EVENTSOURCE), "topics", "describe", "bank.account.events"]
        started = Outage(
            plain=popen([*store, "plain"], address),
            configured=popen([*store, "configured"], address),
            service=popen([*run, "-d", f"sqlite:///{database}"], address),
            service_started=time.monotonic(),
            one_shot=popen(describe, address),
        )
        try:
            yield started
        finally:
            for proc in (started.plain, started.configured, started.service, started.one_shot):
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=60)


def is_librdkafka_raw(line: str) -> bool:
    return line.startswith("%") or ("rdkafka#" in line and not line.startswith(("{", "WARNING:")))


def test_a_library_user_sees_the_typed_error_and_nothing_on_stderr(outage: Outage) -> None:
    result = finished(outage.plain)

    assert result.stdout.startswith("StoreUnavailableError"), result.stdout + result.stderr
    assert result.stderr == ""


def test_an_application_that_shows_its_logs_gets_at_most_a_warning_per_kind(
    outage: Outage,
) -> None:
    result = finished(outage.configured)

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


def test_the_service_logs_an_outage_as_a_few_json_warnings(outage: Outage) -> None:
    # A bounded stretch of outage from the service's start; the lines are counted over it.
    time.sleep(max(0.0, outage.service_started + OUTAGE_S - time.monotonic()))
    outage.service.send_signal(signal.SIGTERM)
    stderr = finished(outage.service).stderr

    lines = stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is the service's JSON
    # The service may notice the outage first (its own broker probe) or through a client's
    # refused connection; either way a few lines, and the client's are warnings.
    client = [r for r in records if r["logger"] == "eventsource.kafka.client"]
    assert {r["level"] for r in client} <= {"warning"}
    assert {r["kafka_kind"] for r in client} <= {"broker-unreachable"}
    assert len(client) <= 2, stderr
    assert len(records) <= 12, stderr


def test_a_one_shot_command_prints_only_its_own_error(outage: Outage) -> None:
    result = finished(outage.one_shot)

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
