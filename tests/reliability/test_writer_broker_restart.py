"""SIGKILL the broker under a stream of appends: nothing acknowledged is lost or doubled.

Runs its own broker (never the shared one) and kills it with SIGKILL while several threads
append. Every append that returned success must be on the topic exactly once, versions
must stay contiguous per aggregate, failures must come back within the append timeout, and
the writers must recover by themselves once the broker is back.
"""

from __future__ import annotations

import time

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.launcher import LocalKafka
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account
from tests.reliability.appending_threads import ACCOUNT, AppendingThreads, check_exactly_once

pytestmark = pytest.mark.integration

APPEND_TIMEOUT = 20.0


@pytest.mark.parametrize(
    "kills",
    [pytest.param(1, id="one-kill"), pytest.param(3, id="three-kills", marks=pytest.mark.slow)],
)
def test_acknowledged_appends_survive_broker_sigkills_exactly_once(
    broker: LocalKafka, kills: int
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        application_id="restart-test",
        delivery_timeout_ms=5_000,
        transaction_timeout_ms=15_000,
    )
    partitions = 3
    store = KafkaEventStore(settings, [Account], partitions=partitions).start(timeout=120)
    try:
        with AppendingThreads(
            store,
            partitions=partitions,
            threads=4,
            aggregates=6,
            timeout=APPEND_TIMEOUT,
            prefix="c",
            deposits=lambda turn: 1 + turn % 2,
        ) as clients:
            for _ in range(kills):
                time.sleep(3)
                broker.kill()
                time.sleep(1)
                broker.start(timeout=120)
            before = clients.successes()
            deadline = time.monotonic() + 60
            while clients.successes() < before + 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            recovered = clients.successes() - before
        assert recovered >= 50, f"writers did not recover by themselves: {clients.outcomes}"
        hung = [t.name for t in clients.threads if t.is_alive()]
        assert not hung, f"appends did not return while the broker was down: {hung}"
    finally:
        store.close()

    versions = check_exactly_once(settings, store, clients)
    with KafkaEventStore(settings, [Account], partitions=partitions) as again:
        assert {a: again.version(ACCOUNT, a) for a in versions} == versions
    print(f"outcomes over {kills} broker kills: {dict(clients.outcomes)}")
