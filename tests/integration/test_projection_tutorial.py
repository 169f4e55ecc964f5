"""Tutorial part 2 (projections) runs as written, on the real broker and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource.projection.checkpoints import checkpoints_table
from eventsource.projection.store import create_read_model_engine, projections_table
from tests.unit.test_docs_tutorial import ROOT, run_blocks, runnable_blocks

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PAGE = ROOT / "docs" / "tutorial" / "2-projections.md"


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


def test_the_projection_tutorial_runs_into_sqlite_and_postgresql(
    bootstrap_servers: str,
    postgres_url: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTSOURCE_BOOTSTRAP_SERVERS", bootstrap_servers)
    monkeypatch.setenv("EVENTSOURCE_APPLICATION_ID", unique_name)
    monkeypatch.setenv("EVENTSOURCE_TEST_POSTGRES_URL", postgres_url)
    monkeypatch.chdir(tmp_path)  # the page's balances.db
    forget_tutorial_model(postgres_url)
    blocks = runnable_blocks(PAGE)
    assert len(blocks) == 5, "the page's runnable blocks changed: update this test"
    module = run_blocks(blocks, "docs_tutorial_2")
    assert module.stats.applied >= 5
    assert (tmp_path / "balances.db").is_file()
