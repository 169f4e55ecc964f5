"""The broker goes away mid-run and comes back: the service recovers by itself.

Uses its own broker (the launcher, on free ports) because it stops it; the shared one is
never touched.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.launcher import LocalKafka
from tests.e2e.conftest import BALANCES, Service, read_balances, wait_for
from tests.e2e.helpers import expected_balances, read_topic, seed_bank

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(home=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def test_service_recovers_after_the_broker_restarts(
    own_broker: LocalKafka,
    service: Callable[..., Service],
    pname: str,
    tmp_path: Path,
) -> None:
    settings = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    topic = f"{pname}.events"
    seed_bank(settings, topic, 1500, seed=3)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    svc = service(
        BALANCES, "--name", pname, "-t", topic, "-d", db, "-b", settings.bootstrap_servers
    )
    wait_for(lambda: svc.caught_up(pname), 90, svc.describe)

    own_broker.stop()

    def reported() -> bool:  # /readyz names the address, in the CLI's words
        try:
            error = svc.readiness()["projections"][pname]["error"] or ""
        except (OSError, KeyError, ValueError):
            return False
        return f"no Kafka broker answers at {settings.bootstrap_servers}" in error

    wait_for(reported, 90, svc.describe)
    assert svc.get("/readyz")[0] == 503
    assert svc.proc.poll() is None, svc.describe()
    own_broker.start()

    seed_bank(settings, topic, 700, seed=4)
    expected = expected_balances(read_topic(settings, topic))
    wait_for(lambda: read_balances(db, pname) == expected, 120, svc.describe)
    assert svc.stop() == 0
