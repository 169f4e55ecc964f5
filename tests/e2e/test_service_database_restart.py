"""The read-model database goes away mid-run and comes back: the service carries on.

Uses its own PostgreSQL (Debian's server binaries, data kept across the restart) because
it stops it; the shared server is never touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.testing.postgres import debian_postgres_bin
from tests.e2e.conftest import BALANCES, Service, read_balances, wait_for
from tests.e2e.helpers import expected_balances, read_topic, seed_bank

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


class RestartablePostgres:
    """initdb once; start and stop keep the data directory."""

    def __init__(self, bin_dir: Path, home: Path) -> None:
        self.bin, self.home, self.port = bin_dir, home, free_port()
        self.data = home / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:  # initdb refuses root: run the server as `postgres`
            user = pwd.getpwnam("postgres")
            os.chown(home, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, str(self.bin / command[0]), *command[1:]],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.home / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    bin_dir = debian_postgres_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("needs Debian's PostgreSQL server binaries to stop and restart a server")
    # Not under tmp_path: the `postgres` user must be able to reach the directory.
    home = Path(tempfile.mkdtemp(prefix="eventsource-e2e-pg-"))
    try:
        server = RestartablePostgres(bin_dir, home)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_service_carries_on_after_the_database_restarts(
    own_postgres: RestartablePostgres,
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 1000, seed=5)
    svc = service(BALANCES, "--name", pname, "-t", topic, "-d", own_postgres.url)
    wait_for(lambda: svc.caught_up(pname), 90, svc.describe)

    own_postgres.stop()
    seed_bank(kafka_settings, topic, 600, seed=6)
    wait_for(lambda: svc.get("/readyz")[0] == 503, 60, svc.describe)
    assert svc.get("/healthz")[0] == 200
    time.sleep(2)  # a few failed attempts while the database is down
    own_postgres.start()

    expected = expected_balances(read_topic(kafka_settings, topic))
    wait_for(lambda: _balances_or_none(own_postgres.url, pname) == expected, 120, svc.describe)
    wait_for(lambda: svc.get("/readyz")[0] == 200, 60, svc.describe)
    assert svc.stop() == 0


def test_readyz_names_a_database_that_is_not_up_yet_and_flips_once_it_is(
    own_postgres: RestartablePostgres,
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
) -> None:
    # A server that is down is transient (retried, reported); a SQLite file in a missing
    # directory is not: that exits 2 (tests/e2e/test_cli_first_hour.py).
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 800, seed=8)
    own_postgres.stop()
    svc = service(BALANCES, "--name", pname, "-t", topic, "-d", own_postgres.url)

    def error() -> str:
        try:
            return str(svc.readiness()["projections"][pname]["error"] or "")
        except (OSError, KeyError, ValueError):
            return ""

    wait_for(lambda: "is unavailable" in error(), 60, svc.describe)
    assert f"127.0.0.1:{own_postgres.port}" in error()
    assert "sqlalche.me" not in error()
    assert svc.get("/readyz")[0] == 503 and svc.get("/healthz")[0] == 200
    assert svc.metric("eventsource_runner_errors_total", projection=pname) >= 1

    own_postgres.start()
    wait_for(lambda: svc.caught_up(pname), 120, svc.describe)
    assert svc.get("/readyz")[0] == 200
    assert svc.stop() == 0
    assert read_balances(own_postgres.url, pname) == expected_balances(
        read_topic(kafka_settings, topic)
    )


def _balances_or_none(url: str, projection: str) -> dict[str, tuple[int, int]] | None:
    try:
        return read_balances(url, projection)
    except Exception:  # the server is still starting
        return None
