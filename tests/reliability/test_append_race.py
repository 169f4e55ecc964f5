"""Two OS processes race appends to the same aggregates at the same expected versions.

The issue's requirement: 500 times, exactly one wins, the loser gets ``ConcurrencyError``
and writes nothing, and the topic holds contiguous versions 1..N per aggregate with no
duplicate. Three processes, started with the ``spawn`` method so they share nothing:

- the owner: ``KafkaEventStore`` (transactional writers, version index) + ``AppendServer``;
- two racers: ``RemoteEventStore`` each, one thread per aggregate; before every round both
  racers meet at a barrier, then append at the same expected version.

The 500 rounds are spread over 10 aggregates (50 rounds each, concurrently), so the owner
group-commits several racers' appends per transaction, as it would in production.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter, defaultdict
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event

import pytest

from eventsource.codec import EventCodec
from eventsource.domain import Event as DomainEvent
from eventsource.domain import Position
from eventsource.errors import ConcurrencyError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.routing import AppendServer, RemoteEventStore
from eventsource.testing.seed import wait_readable
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.e2e.helpers import read_events

pytestmark = pytest.mark.integration

AGGREGATES = 10
ROUNDS_PER_AGGREGATE = 50  # 10 x 50 = 500 contested appends
RACERS = 2
PARTITIONS = 6
Outcome = tuple[int, str, int, str]  # (racer, aggregate id, round, "won" | error description)


def aggregate_ids() -> list[str]:
    return [f"acc-{n}" for n in range(AGGREGATES)]


def event_for(racer: int, round_no: int) -> AccountOpened | MoneyDeposited:
    """The event racer ``racer`` appends in ``round_no``; it says who wrote it."""
    if round_no == 0:
        return AccountOpened(owner=f"racer-{racer}")
    return MoneyDeposited(amount=Decimal(round_no) + Decimal(racer) / 100)


def run_owner(bootstrap: str, app_id: str, prefix: str, ready: Event, stop: Event) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app_id)
    store = KafkaEventStore(settings, [Account], partitions=PARTITIONS, topic_prefix=prefix)
    with store.start(), AppendServer(store, settings, store.codec):
        ready.set()
        stop.wait(300)


def run_racer(
    bootstrap: str, app_id: str, racer: int, barriers: list[Barrier], results: Queue[Outcome]
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap, application_id=app_id)
    codec = EventCodec.for_events(Account.event_types())
    written: list[Position] = []  # of the won appends: readable before this racer exits
    with RemoteEventStore(settings, codec, timeout=30) as store:

        def race(index: int, aggregate_id: str) -> None:
            for round_no in range(ROUNDS_PER_AGGREGATE):
                barriers[index].wait(60)
                try:
                    result = store.append(
                        "bank.account", aggregate_id, [event_for(racer, round_no)], round_no
                    )
                    written.extend(result.positions)
                    outcome = "won"
                except ConcurrencyError as exc:
                    outcome = f"ConcurrencyError expected={exc.expected} actual={exc.actual}"
                except Exception as exc:  # recorded, then asserted on by the test
                    outcome = f"{type(exc).__name__}: {exc}"
                results.put((racer, aggregate_id, round_no, outcome))

        threads = [
            threading.Thread(target=race, args=(i, a)) for i, a in enumerate(aggregate_ids())
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wait_readable(settings, written)  # commit markers land after the append returned


def test_two_processes_racing_500_appends_have_one_winner_each_and_a_contiguous_topic(
    bootstrap_servers: str, unique_name: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    app_id, prefix = unique_name, f"{unique_name}."
    ready, stop = ctx.Event(), ctx.Event()
    barriers = [ctx.Barrier(RACERS) for _ in range(AGGREGATES)]
    results: Queue[Outcome] = ctx.Queue()
    owner = ctx.Process(target=run_owner, args=(bootstrap_servers, app_id, prefix, ready, stop))
    owner.start()
    racers = []
    try:
        assert ready.wait(120), "the owner process did not start its store and server"
        racers = [
            ctx.Process(target=run_racer, args=(bootstrap_servers, app_id, r, barriers, results))
            for r in range(RACERS)
        ]
        for racer in racers:
            racer.start()
        expected_results = RACERS * AGGREGATES * ROUNDS_PER_AGGREGATE
        outcomes = [results.get(timeout=120) for _ in range(expected_results)]
        for racer in racers:
            racer.join(30)
            assert racer.exitcode == 0
    finally:
        stop.set()
        owner.join(60)
        for process in [owner, *racers]:
            if process.is_alive():
                process.kill()
                process.join()
    assert owner.exitcode == 0

    by_round: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
    for racer_no, aggregate_id, round_no, outcome in outcomes:
        by_round[(aggregate_id, round_no)].append((racer_no, outcome))
    assert len(by_round) == AGGREGATES * ROUNDS_PER_AGGREGATE == 500
    winners: dict[tuple[str, int], int] = {}
    for (aggregate_id, round_no), pair in by_round.items():
        won = [racer for racer, outcome in pair if outcome == "won"]
        lost = [outcome for _, outcome in pair if outcome != "won"]
        assert len(won) == 1, f"{aggregate_id} round {round_no}: {pair}"
        assert lost == [f"ConcurrencyError expected={round_no} actual={round_no + 1}"], pair
        winners[(aggregate_id, round_no)] = won[0]

    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=app_id)
    codec = EventCodec.for_events(Account.event_types())
    records = read_events(settings, f"{prefix}bank.account.events", codec)
    event_ids = Counter(event_id for _, _, event_id, _ in records)
    assert [i for i, n in event_ids.items() if n > 1] == []
    assert len(records) == 500
    stored: dict[str, list[tuple[int, DomainEvent]]] = defaultdict(list)
    for aggregate_id, version, _, event in records:
        stored[aggregate_id].append((version, event))
    assert sorted(stored) == sorted(aggregate_ids())
    for aggregate_id, history in stored.items():
        assert [v for v, _ in history] == list(range(1, ROUNDS_PER_AGGREGATE + 1)), aggregate_id
        # The stored event of each round is the winner's, so the loser wrote nothing.
        assert [e for _, e in history] == [
            event_for(winners[(aggregate_id, r)], r) for r in range(ROUNDS_PER_AGGREGATE)
        ]
