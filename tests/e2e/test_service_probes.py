"""The service's probes, metrics and logs, observed from outside like an orchestrator."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from eventsource.kafka.config import KafkaSettings
from tests.e2e.conftest import BALANCES, Cli, Service, wait_for
from tests.e2e.helpers import seed_bank

pytestmark = pytest.mark.integration


def test_metrics_counters_move_with_the_work(
    service: Callable[..., Service], kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 1000, seed=1)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    svc = service(BALANCES, "--name", pname, "-t", topic, "-d", db)
    processed = "eventsource_events_processed_total"
    wait_for(lambda: svc.metric(processed, projection=pname) == 1000, 90, svc.describe)
    assert svc.metric("eventsource_batch_seconds_count", projection=pname) >= 1
    assert svc.metric("eventsource_rebalances_total", projection=pname, kind="assigned") >= 1
    assert svc.get("/healthz")[0] == 200

    seed_bank(kafka_settings, topic, 500, seed=2)
    wait_for(lambda: svc.metric(processed, projection=pname) == 1500, 90, svc.describe)
    # Lag gauges are refreshed from the checkpoints every few seconds.
    wait_for(
        lambda: (
            all(
                svc.metric("eventsource_lag", projection=pname, topic=topic, partition=str(p)) == 0
                for p in range(3)
            )
            and "eventsource_lag{" in svc.get("/metrics")[1]
        ),
        30,
        svc.describe,
    )
    assert svc.stop() == 0


@pytest.mark.postgres
def unreachable_database(url: str) -> str:
    """The same URL, password included, pointing at a port where nothing listens."""
    moved = make_url(url).set(host="127.0.0.1", port=1, query={})
    return moved.render_as_string(hide_password=False)


def test_passwords_in_settings_never_reach_logs_or_error_output(
    cli: Cli,
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    postgres_url: str,
    pname: str,
    tmp_path: Path,
) -> None:
    sasl, db_password, key_password = "sasl-Pw-7f3a9c", "db-Pw-51e0b2", "key-Pw-c0ffee"
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 300)
    # The test server trusts local connections, so the password is carried but not checked.
    db = postgres_url.replace("postgres@", f"postgres:{db_password}@", 1)
    assert db_password in db
    secrets = ["-X", f"sasl.password={sasl}", "-X", f"ssl.key.password={key_password}"]
    svc = service(
        BALANCES, "--name", pname, "-t", topic, "-d", db, "--log-level", "DEBUG", *secrets
    )
    wait_for(lambda: svc.caught_up(pname), 90, svc.describe)
    assert svc.stop() == 0
    where = ["--name", pname, "-t", topic, *secrets]
    failing = cli.all(
        ["topics", "describe", topic, "--timeout", "1", *secrets, "-b", "127.0.0.1:1"],
        ["status", BALANCES, *where, "-d", unreachable_database(db)],
        ["topics", "describe", "x", "--timeout", "1", *secrets, "-X", "no-equals-sign"],
        ["run", BALANCES, "-d", db, *secrets, "--log-level", "loud"],
    )
    assert [r.returncode for r in failing] == [1, 1, 2, 2]
    output = svc.log_path.read_text() + "".join(r.stdout + r.stderr for r in failing)
    starting = next(r for r in svc.lines() if r.get("event") == "service starting")
    assert "postgres:***@" in starting["database_url"]
    for secret in (sasl, db_password, key_password):
        assert secret not in output
    assert os.environ.get("EVENTSOURCE_KAFKA_EXTRA") is None
