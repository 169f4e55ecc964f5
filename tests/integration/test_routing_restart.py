"""A crashed owner process is replaced at once, and requests sent meanwhile never run.

The owner runs in its own OS process and is killed with SIGKILL, so its consumer never
leaves the group. The replacement serves without waiting for the dead member's session to
expire, because both use the same static group member id; and the request sent while no
owner was up is reported as uncertain to its caller and is not executed later.
"""

from __future__ import annotations

import multiprocessing
import uuid
from decimal import Decimal
from multiprocessing.synchronize import Event

import pytest

from eventsource.codec import EventCodec
from eventsource.errors import UncertainCommitError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.routing import AppendServer, RemoteEventStore
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

TYPE = Account.aggregate_type


def run_owner(bootstrap: str, app_id: str, ready: Event, stop: Event) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app_id)
    store = KafkaEventStore(settings, [Account], partitions=2, topic_prefix=f"{app_id}.")
    with store.start(), AppendServer(store, settings, store.codec, member_id="owner"):
        ready.set()
        stop.wait(120)


def test_a_restarted_owner_serves_at_once_and_never_runs_requests_sent_while_it_was_down(
    bootstrap_servers: str,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    app_id = f"t_routing_restart_{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=app_id)
    codec = EventCodec.for_events(Account.event_types())
    # Separate events per process: one a killed process waited on is left broken.
    first_ready, first_stop = ctx.Event(), ctx.Event()
    second_ready, second_stop = ctx.Event(), ctx.Event()
    first = ctx.Process(target=run_owner, args=(bootstrap_servers, app_id, first_ready, first_stop))
    second = ctx.Process(
        target=run_owner, args=(bootstrap_servers, app_id, second_ready, second_stop)
    )
    first.start()
    try:
        assert first_ready.wait(90), "the first owner did not start"
        with RemoteEventStore(settings, codec, timeout=20) as client:
            assert client.append(TYPE, "acc-1", [AccountOpened(owner="ann")], 0).version == 1
            first.kill()
            first.join(30)

            client.timeout = 2
            with pytest.raises(UncertainCommitError, match="reload the aggregate"):
                client.append(TYPE, "acc-1", [MoneyDeposited(amount=Decimal("1"))], 1)

            second.start()
            # AppendServer.start() gives up after 30 s; the dead member's session is 45 s.
            assert second_ready.wait(90), "the replacement owner did not start"
            assert second.is_alive()
            client.timeout = 20
            assert client.version(TYPE, "acc-1") == 1  # the uncertain request never ran
            result = client.append(TYPE, "acc-1", [MoneyDeposited(amount=Decimal("2"))], 1)
            assert result.version == 2
    finally:
        second_stop.set()
        for process in (first, second):
            if process.pid is not None:
                process.join(30)
                if process.is_alive():
                    process.kill()
                    process.join()
    assert second.exitcode == 0
