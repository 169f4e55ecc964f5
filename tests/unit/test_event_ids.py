"""Event ids: valid, distinct version 4 UUIDs, also across threads, forks and renewals."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import uuid

from eventsource.store.kafka import ids
from eventsource.store.kafka.ids import new_event_id


def _is_v4(text: str) -> bool:
    parsed = uuid.UUID(text)
    return parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


def test_ids_are_distinct_version_4_uuid_strings() -> None:
    made = [new_event_id() for _ in range(10_000)]
    assert all(_is_v4(i) for i in made)
    assert len(set(made)) == len(made)


def test_ids_made_by_many_threads_at_once_are_distinct() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(into: list[str]) -> None:
        into.extend(new_event_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for into in made for i in into]
    assert len(set(everything)) == len(everything) == 40_000


def test_a_process_that_runs_out_of_counter_draws_a_new_prefix() -> None:
    before = new_event_id()
    prefix = ids._state[0]
    ids._state = (prefix, itertools.count(1 << 48))  # as if 2**48 ids had been made
    after = new_event_id()
    assert _is_v4(after)
    assert after[:24] != prefix
    assert after.endswith("000000000000") and after != before


def _ids_in_child(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_event_id() for _ in range(100)])


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_ids_in_child, args=(queue,))
    child.start()
    from_child = queue.get(timeout=30)
    child.join(30)
    from_parent = [new_event_id() for _ in range(100)]
    assert all(_is_v4(i) for i in from_child)
    assert not set(from_child) & set(from_parent)
    assert from_child[0][:24] != from_parent[0][:24]
