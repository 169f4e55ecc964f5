"""Tutorial part 2 (projections) runs as written, on the real broker and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from tests.unit.test_docs_tutorial import (
    ROOT,
    TUTORIAL_2,
    commands,
    fences,
    repository_like,
    run_command,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def forget_tutorial_model(postgres_url: str) -> None:
    """The page folds into a fixed projection name; start PostgreSQL from nothing."""
    engine = create_read_model_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('DROP VIEW IF EXISTS "tutorial_balances_accounts"')
        conn.exec_driver_sql('DROP TABLE IF EXISTS "tutorial_balances_v1_accounts"')
        if conn.dialect.has_table(conn, checkpoints_table.name):
            for system in (checkpoints_table, projections_table):
                conn.execute(system.delete().where(system.c.projection == "tutorial_balances"))
    engine.dispose()


@pytest.fixture
def env(bootstrap_servers: str, postgres_url: str, unique_name: str) -> dict[str, str]:
    return {
        "EVENTSOURCE_BOOTSTRAP_SERVERS": bootstrap_servers,
        "EVENTSOURCE_APPLICATION_ID": unique_name,
        # What the services runner finds already set, it uses instead of starting its own.
        "EVENTSOURCE_TEST_POSTGRES_URL": postgres_url,
    }


def test_every_command_of_the_projection_tutorial_runs_as_written(
    env: dict[str, str], postgres_url: str, tmp_path: Path
) -> None:
    forget_tutorial_model(postgres_url)
    cwd = repository_like(tmp_path)
    project, read_your_writes, on_postgres = commands(TUTORIAL_2)

    result = run_command(project, cwd, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "[('ann', 8750, 3), ('bob', 10000, 2)]"
    assert (tmp_path / ".eventsource" / "tutorial" / "balances.db").is_file()

    result = run_command(read_your_writes, cwd, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith(": 10125 cents")

    result = run_command(on_postgres, cwd, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[('ann', 8750, 3), ('bob', 10000, 2)]" in result.stdout
    assert "[services] using PostgreSQL at" in result.stdout  # the one the test gave it


def test_the_docker_variant_differs_only_by_the_compose_url() -> None:
    [docker] = [fence for fence in fences(TUTORIAL_2) if fence.not_run]
    project = commands(TUTORIAL_2)[0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]

    assert docker.lines == (
        "docker compose up -d --wait postgres",
        f"{project} postgresql+psycopg://postgres:{password}@localhost:5432/postgres",
    )


def test_without_a_database_server_the_program_says_so_in_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    import socket

    project = commands(TUTORIAL_2)[0]
    with socket.socket() as closed:  # bound, never listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{closed.getsockname()[1]}/postgres"
        result = run_command(f"{project} {url}", repository_like(tmp_path), env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    first, hint = result.stderr.splitlines()
    assert first.startswith("error: the read-model database PostgreSQL ")
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in first
    assert "Connection refused" in first
    assert hint == "(the database URL is this program's argument)"
    assert "secret" not in result.stderr
