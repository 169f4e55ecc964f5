"""The edges of the projection commands: read-only commands create nothing, an
interrupted replay resumes, and a running service follows a blue/green swap."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from tests.e2e.conftest import BALANCES, Cli
from tests.e2e.helpers import seed_bank

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
