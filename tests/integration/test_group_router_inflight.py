"""How many routed appends a GroupRouter keeps in flight, and what closing it does to them.

A routed append waits for the owner's reply (two Kafka hops). The router chains on the
client's future instead of holding a thread per append, so the number in flight is bounded
by the owner's backlog, not by a thread pool; these tests observe that at the owner.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from eventsource.codec import EventCodec
from eventsource.errors import NotOwnerError, StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.appending import AppendCall, AppenderBase
from eventsource.store.kafka import GroupedKafkaEventStore, GroupRouter
from eventsource.store.kafka.scaleout.group_store_route import member_settings
from eventsource.store.port import AppendResult
from eventsource.store.routing import AppendServer
from examples.bank.domain import Account, AccountOpened
from tests.integration.test_routing_limits import wait_until

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
IN_FLIGHT = 200
"""More than any thread pool a router ever had (32 by default, 64 in the benchmark)."""
CODEC = EventCodec.for_events(Account.event_types())


class Gate(AppenderBase):
    """The owner's store behind a gate: every append waits until ``size`` are waiting.

    Only appends that are in flight at once can reach ``size``: a router that held a thread
    per append would stop at its thread count and the gate would never open.
    """

    def __init__(self, store: GroupedKafkaEventStore, size: int) -> None:
        self.store = store
        self.size = size
        self.opened = threading.Event()
        self.most_waiting = 0
        self._held: list[tuple[AppendCall, Future[AppendResult]]] = []
        self._lock = threading.Lock()

    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        result: Future[AppendResult] = Future()
        with self._lock:
            opened = self.opened.is_set()
            if not opened:
                self._held.append((call, result))
                self.most_waiting = max(self.most_waiting, len(self._held))
        if opened:
            self._forward(call, result)
        elif self.most_waiting >= self.size:
            self.open()
        return result

    def open(self) -> None:
        """Let every waiting append through, and the later ones at once."""
        with self._lock:
            self.opened.set()
            held, self._held = self._held, []
        for call, future in held:
            self._forward(call, future)

    def _forward(self, call: AppendCall, future: Future[AppendResult]) -> None:
        appended = self.store.append_async(
            call.aggregate_type, call.aggregate_id, call.events, call.expected_version
        )

        def done(f: Future[AppendResult]) -> None:
            error = f.exception()
            if error is None:
                future.set_result(f.result())
            else:
                future.set_exception(error)

        appended.add_done_callback(done)

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        return self.store.version(aggregate_type, aggregate_id)


def test_many_more_routed_appends_than_router_threads_are_in_flight_at_once(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    prefix = f"{unique_name}."
    store = GroupedKafkaEventStore(
        settings, [Account], directory=tmp_path, member="solo", partitions=2, topic_prefix=prefix
    ).start()
    gate = Gate(store, IN_FLIGHT)
    try:
        wait_until(lambda: len(store.owned) == 2, "the member owns both partitions", 60)
        assert store.wait_serving(60)
        with (
            AppendServer(gate, member_settings(settings, "solo"), store.codec, member_id="solo"),
            GroupRouter(
                settings, store.codec, partitions=2, topic_prefix=prefix, timeout=300
            ) as router,
        ):
            futures = [
                router.append_async(ACCOUNT, f"acc-{n}", [AccountOpened(owner="x")], 0)
                for n in range(IN_FLIGHT)
            ]
            full = gate.opened.wait(120)
            gate.open()  # let them through either way, so that they all end
            assert [f.result(120).version for f in futures] == [1] * IN_FLIGHT
            assert full, (
                f"the owner saw at most {gate.most_waiting} of {IN_FLIGHT} routed appends "
                "waiting at once"
            )
            assert gate.most_waiting == IN_FLIGHT
            assert router.version(ACCOUNT, "acc-7") == 1
    finally:
        store.close()


def test_closing_the_router_fails_an_append_waiting_to_be_retried_with_nothing_written(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    router = GroupRouter(
        settings, CODEC, partitions=2, topic_prefix=f"{unique_name}.", retry_for=600
    )
    # No writer runs: the partition has no owner, so the append waits to be sent again.
    future = router.append_async(ACCOUNT, "acc-0", [AccountOpened(owner="x")], 0)
    wait_until(
        lambda: router.retried == 1 and router.retries_waiting == 1, "the append waits for a retry"
    )
    router.close()
    with pytest.raises(StoreUnavailableError, match="closed") as caught:
        future.result(60)
    assert "nothing was written" in str(caught.value)
    assert isinstance(caught.value.__cause__, NotOwnerError)
    with pytest.raises(StoreUnavailableError, match="closed"):
        router.append_async(ACCOUNT, "acc-1", [AccountOpened(owner="x")], 0)
