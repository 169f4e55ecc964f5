"""SIGTERM during a busy stream: exit 0 within the bound, consistent checkpoint, no loss."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from eventsource.kafka.config import KafkaSettings
from tests.e2e.conftest import BALANCES, Service, read_balances, read_checkpoints, wait_for
from tests.e2e.helpers import expected_balances, read_topic, seed_bank

pytestmark = pytest.mark.integration

DRAIN_S = 15


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGTERM, id="SIGTERM"),
        # One handler serves both signals (eventsource.service.signals); SIGINT's reaching it
        # is covered by the start-up test below: the mid-stream drain with it is slow-only.
        pytest.param(signal.SIGINT, id="SIGINT", marks=pytest.mark.slow),
    ],
)
def test_signal_mid_stream_drains_commits_and_restart_loses_nothing(
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 30_000)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    args = [BALANCES, "--name", pname, "-t", topic, "-d", db, "--batch-size", "100"]
    svc = service(*args, "--drain-timeout", str(DRAIN_S))
    wait_for(
        lambda: svc.metric("eventsource_events_processed_total", projection=pname) > 0,
        90,
        svc.describe,
    )
    # Exit 0 within the drain bound (the wait's timeout is the bound plus process start-up).
    assert svc.stop(sig, timeout=DRAIN_S + 10) == 0, svc.describe()
    stopped = [r for r in svc.lines() if r.get("event") == "service stopped"]
    assert stopped and stopped[0]["exit_code"] == 0
    assert any(r.get("event") == "partitions revoked" for r in svc.lines())

    records = read_topic(kafka_settings, topic)
    checkpoints = {p: o for (t, p), o in read_checkpoints(db, pname).items() if t == topic}
    total = sum(len(rows) for rows in records.values())
    assert sum(checkpoints.values()) < total, "the signal came after the stream was done"
    assert read_balances(db, pname) == expected_balances(records, checkpoints)

    again = service(*args)
    wait_for(lambda: again.caught_up(pname), 120, again.describe)
    assert again.stop() == 0
    assert read_balances(db, pname) == expected_balances(records)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up_exits_0_without_starting(
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 30)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    svc = service(
        "tests.e2e.slow_start:AccountBalances",
        *("--name", pname, "-t", topic, "-d", db),
        SLOW_START_DIR=str(tmp_path),
    )
    wait_for((tmp_path / "importing").exists, 60, svc.describe)
    svc.proc.send_signal(sig)  # still importing the projections
    (tmp_path / "release").touch()
    assert svc.proc.wait(timeout=60) == 0, svc.describe()
    assert any(r.get("event") == "stop requested during start-up" for r in svc.lines())
    assert not (tmp_path / "rm.db").exists()  # nothing started, nothing created


def test_a_replica_with_an_instance_id_is_a_static_member_and_resumes_after_sigkill(
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 300)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    args = [BALANCES, "--name", pname, "-t", topic, "-d", db, "--instance-id", "replica-0"]
    first = service(*args)
    wait_for(lambda: first.caught_up(pname), 90, first.describe)
    group = f"{kafka_settings.application_id}.projection.{pname}.v1"
    admin = AdminClient(kafka_settings.admin_config())
    members = admin.describe_consumer_groups([group])[group].result(timeout=30).members
    assert [m.group_instance_id for m in members] == ["replica-0"]
    first.stop(signal.SIGKILL)

    # The replacement takes the dead member's place (no wait for its session timeout).
    again = service(*args)
    wait_for(lambda: again.caught_up(pname), 90, again.describe)
    assert again.stop() == 0
    records = read_topic(kafka_settings, topic)
    assert read_balances(db, pname) == expected_balances(records)


def test_a_second_replica_with_the_same_instance_id_makes_the_first_exit_2_naming_it(
    service: Callable[..., Service],
    kafka_settings: KafkaSettings,
    pname: str,
    tmp_path: Path,
) -> None:
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 30)
    args = [BALANCES, "--name", pname, "-t", topic, "--instance-id", "replica-0"]
    first = service(*args, "-d", f"sqlite:///{tmp_path / 'first.db'}")
    wait_for(lambda: first.caught_up(pname), 90, first.describe)
    second = service(*args, "-d", f"sqlite:///{tmp_path / 'second.db'}")
    wait_for(lambda: second.caught_up(pname), 90, second.describe)
    # The broker fences the first at its next heartbeat: a configuration error, not a
    # restart that would take the place back and fence the second in turn.
    assert first.proc.wait(timeout=60) == 2, first.describe()
    failures = [r for r in first.lines() if r.get("event") == "configuration error"]
    assert failures and "'replica-0'" in failures[0]["error"], first.describe()
    assert "same instance id" in failures[0]["error"]
    assert second.stop() == 0
