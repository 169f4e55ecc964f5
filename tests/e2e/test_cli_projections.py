"""``eventsource run``, ``status``, ``replay`` and ``rebuild`` on the real broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.testing.seed import by_aggregate, create_topic, fold, seed_events
from examples.bank.domain import Account
from examples.bank.projections import cents, sample_history
from tests.e2e.conftest import BALANCES, Cli, Service, parsed, read_balances, wait_for

pytestmark = pytest.mark.integration


def seeded(settings: KafkaSettings, topic: str, events: int) -> dict[str, tuple[int, int]]:
    """Seed a valid bank history; returns the expected (balance cents, events) per account."""
    history = sample_history(40, events, seed=7)
    create_topic(settings, topic, partitions=3)
    seed_events(settings, topic, history)
    counts = by_aggregate(history)
    return {a.id: (cents(a.balance), counts[a.id]) for a in fold(Account, history).values()}


def test_status_reports_lag_zero_once_the_service_caught_up(
    cli: Cli,
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
) -> None:
    topic = f"{pname}.events"
    expected = seeded(kafka_settings, topic, 2000)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-t", topic, "-d", db]
    assert cli("status", BALANCES, *where).returncode == 2  # no database yet: nothing made
    cli.json("replay", BALANCES, *where, "--to", "0")  # the database, one event per partition
    listed, lagging = cli.all(
        ["status", BALANCES, *where, "--json"], ["status", BALANCES, *where, "--max-lag", "0"]
    )
    before = parsed(listed)
    assert sum(row["lag"] for row in before) > 0
    assert lagging.returncode == 1

    svc = service(BALANCES, *where)
    wait_for(lambda: svc.caught_up(pname), 90, svc.describe)
    listed, within, human = cli.all(
        ["status", BALANCES, *where, "--json"],
        ["status", BALANCES, *where, "--max-lag", "0"],
        ["status", BALANCES, *where],
    )
    after = parsed(listed)
    assert [(r["partition"], r["lag"]) for r in after] == [(0, 0), (1, 0), (2, 0)]
    assert all(r["checkpoint"] == r["end_offset"] for r in after)
    assert within.returncode == 0
    assert "total lag: 0" in human.stdout
    assert svc.stop() == 0
    assert read_balances(db, pname) == expected


def test_replay_reproduces_the_read_model(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    topic = f"{pname}.events"
    expected = seeded(kafka_settings, topic, 1500)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-t", topic, "-d", db]
    first = cli.json("replay", BALANCES, *where)
    assert first["applied"] == 1500
    assert read_balances(db, pname) == expected
    again = cli("replay", BALANCES, *where)
    assert again.returncode == 0, again.stderr
    assert "replayed" in again.stdout and "1500 events" in again.stdout
    assert read_balances(db, pname) == expected
    partial = cli.json("replay", BALANCES, *where, "--to", "9")
    assert partial["applied"] < 1500
    assert read_balances(db, pname) != expected


def test_rebuild_fills_a_new_version_and_swaps_it_live(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    topic = f"{pname}.events"
    expected = seeded(kafka_settings, topic, 1000)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-t", topic, "-d", db]
    cli.json("replay", BALANCES, *where)
    result = cli.json("rebuild", BALANCES, *where, "--projection-version", "2")
    assert (result["version"], result["previous_version"], result["swapped"]) == (2, 1, True)
    assert read_balances(db, pname) == expected
    live_again = cli("rebuild", BALANCES, *where, "--projection-version", "2")
    assert live_again.returncode == 2
    assert "already live" in live_again.stderr


def test_missing_projection_path_is_a_usage_error(cli: Cli) -> None:
    out = cli("status", "examples.bank.projections:NoSuchProjection")
    assert out.returncode == 2
    assert "has no attribute 'NoSuchProjection'" in out.stderr


def test_one_service_runs_several_projections(
    cli: Cli,
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
) -> None:
    topic = f"{pname}.events"
    expected = seeded(kafka_settings, topic, 800)
    (tmp_path / "two_models.py").write_text(
        "from examples.bank.projections import AccountBalances, AccountBalancesPerEvent\n"
        f"batched = AccountBalances(name='{pname}_a', topics=['{topic}'])\n"
        f"per_event = AccountBalancesPerEvent(name='{pname}_b', topics=['{topic}'])\n"
    )
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    svc = service("two_models:batched", "two_models:per_event", "-d", db)
    wait_for(lambda: svc.caught_up(f"{pname}_a") and svc.caught_up(f"{pname}_b"), 90, svc.describe)
    rows = cli.json("status", "two_models:batched", "two_models:per_event", "-d", db)
    assert {r["projection"] for r in rows} == {f"{pname}_a", f"{pname}_b"}
    assert all(r["lag"] == 0 for r in rows)
    assert svc.stop() == 0
    assert read_balances(db, f"{pname}_a") == expected == read_balances(db, f"{pname}_b")
