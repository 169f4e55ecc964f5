"""The owner is SIGKILLed in the middle of a race: nothing acknowledged is lost or doubled.

Two racer processes keep appending to the same aggregates at the same expected versions
through ``RemoteEventStore``, while the test kills the owner process (SIGKILL: no goodbye
to the group, an open transaction left behind) and starts a replacement. Calls in flight
end as ``UncertainCommitError``; the racers then ask ``version()`` (retrying until the new
owner answers) and race on from there. Afterwards the topic must hold every acknowledged
append exactly once, at the acknowledged version, with contiguous versions and no
duplicate, and no two appends may win at the same expected version.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event

import pytest

from eventsource.codec import EventCodec
from eventsource.domain import Event as DomainEvent
from eventsource.domain import Position
from eventsource.errors import (
    ConcurrencyError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.routing import AppendServer, RemoteEventStore
from eventsource.testing.seed import wait_readable
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.e2e.helpers import read_events

pytestmark = pytest.mark.integration

AGGREGATES = 6
ROUNDS = 40
# (racer, aggregate id, round, expected version, outcome: "won" | "lost" | "uncertain")
Outcome = tuple[int, str, int, int, str]


def event_for(racer: int, round_no: int, version: int) -> DomainEvent:
    """The event a racer appends in a round; unique per (racer, round), so says who wrote it."""
    if version == 0:
        return AccountOpened(owner=f"racer-{racer}-round-{round_no}")
    return MoneyDeposited(amount=Decimal(round_no) + Decimal(racer) / 100)


def run_owner(bootstrap: str, app_id: str, ready: Event, stop: Event) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app_id)
    store = KafkaEventStore(settings, [Account], partitions=3, topic_prefix=f"{app_id}.")
    with store.start(), AppendServer(store, settings, store.codec):
        ready.set()
        stop.wait(300)


def run_racer(
    bootstrap: str, app_id: str, racer: int, barriers: list[Barrier], results: Queue[Outcome]
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app_id)
    codec = EventCodec.for_events(Account.event_types())
    written: list[Position] = []  # of the won appends: readable before this racer exits
    with RemoteEventStore(settings, codec, timeout=4) as store:

        def current_version(aggregate_id: str) -> int:
            deadline = time.monotonic() + 120
            while True:
                try:
                    return store.version("bank.account", aggregate_id)
                except StoreUnavailableError:
                    if time.monotonic() > deadline:
                        raise

        def race(index: int, aggregate_id: str) -> None:
            version = 0
            for round_no in range(ROUNDS):
                barriers[index].wait(180)
                event = event_for(racer, round_no, version)
                try:
                    result = store.append("bank.account", aggregate_id, [event], version)
                    written.extend(result.positions)
                    outcome, next_version = "won", version + 1
                except ConcurrencyError as exc:
                    outcome, next_version = "lost", exc.actual
                except UncertainCommitError:
                    outcome, next_version = "uncertain", current_version(aggregate_id)
                results.put((racer, aggregate_id, round_no, version, outcome))
                version = next_version

        threads = [threading.Thread(target=race, args=(i, f"acc-{i}")) for i in range(AGGREGATES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wait_readable(settings, written)  # commit markers land after the append returned


def test_acknowledged_appends_survive_an_owner_sigkill_mid_race_exactly_once(
    bootstrap_servers: str, unique_name: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    app_id = unique_name
    # One pair of events per owner process: events a killed process waited on are broken.
    first_ready, first_stop = ctx.Event(), ctx.Event()
    second_ready, second_stop = ctx.Event(), ctx.Event()
    barriers = [ctx.Barrier(2) for _ in range(AGGREGATES)]
    results: Queue[Outcome] = ctx.Queue()
    first = ctx.Process(target=run_owner, args=(bootstrap_servers, app_id, first_ready, first_stop))
    second = ctx.Process(
        target=run_owner, args=(bootstrap_servers, app_id, second_ready, second_stop)
    )
    racers = [
        ctx.Process(target=run_racer, args=(bootstrap_servers, app_id, r, barriers, results))
        for r in range(2)
    ]
    outcomes: list[Outcome] = []
    first.start()
    try:
        assert first_ready.wait(120), "the first owner did not start"
        for racer in racers:
            racer.start()
        expected = 2 * AGGREGATES * ROUNDS
        while len(outcomes) < expected // 3:  # a third of the race, then the crash
            outcomes.append(results.get(timeout=120))
        first.kill()
        first.join(30)
        second.start()
        assert second_ready.wait(120), "the replacement owner did not start"
        while len(outcomes) < expected:
            outcomes.append(results.get(timeout=180))
        for racer in racers:
            racer.join(60)
            assert racer.exitcode == 0
    finally:
        second_stop.set()
        for process in (first, second, *racers):
            if process.pid is not None:
                process.join(30)
                if process.is_alive():
                    process.kill()
                    process.join()

    # The single-writer guarantee: at most one append succeeds at each expected version.
    # (Racers can drift apart after a crash -- a loser may have been refused against a
    # batch that never committed -- so two can win in one round, at different versions.)
    winners: dict[tuple[str, int], list[Outcome]] = defaultdict(list)
    for entry in outcomes:
        if entry[4] == "won":
            winners[(entry[1], entry[3])].append(entry)
    assert {k: v for k, v in winners.items() if len(v) > 1} == {}
    counts = Counter(o[4] for o in outcomes)
    assert counts["won"] > 0 and counts["lost"] > 0, counts

    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=app_id)
    codec = EventCodec.for_events(Account.event_types())
    records = read_events(settings, f"{app_id}.bank.account.events", codec)
    assert [i for i, n in Counter(r[2] for r in records).items() if n > 1] == []
    stored: dict[str, dict[int, DomainEvent]] = defaultdict(dict)
    for aggregate_id, version, _, event in records:
        assert version not in stored[aggregate_id], f"{aggregate_id} v{version} twice"
        stored[aggregate_id][version] = event
    for aggregate_id, history in stored.items():
        assert sorted(history) == list(range(1, len(history) + 1)), aggregate_id
        payloads = [e.model_dump_json() for e in history.values()]
        assert len(payloads) == len(set(payloads)), f"an append of {aggregate_id} stored twice"
    for racer_no, aggregate_id, round_no, version, result in outcomes:
        if result == "won":
            stored_event = stored[aggregate_id].get(version + 1)
            assert stored_event is not None, f"acknowledged {aggregate_id} v{version + 1} lost"
            assert stored_event == event_for(racer_no, round_no, version)
