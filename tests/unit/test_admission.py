"""The checks a request passes before it joins a group commit, without a broker."""

from __future__ import annotations

import pytest

from eventsource.domain import Aggregate, Event, apply
from eventsource.errors import ApplyError, EventTooLargeError
from eventsource.store.kafka.admission import RECORD_ALLOWANCE, TrialFold, check_record_sizes
from eventsource.store.kafka.index import VersionIndex, scratch_copy
from eventsource.store.kafka.request import AppendRequest


class Tagged(Event):
    __namespace__ = "tests.admission"
    tag: str
    explode: bool = False


class Bag(Aggregate):
    """An aggregate with mutable state, whose handler fails on demand."""

    aggregate_type = "tests.bag"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.tags: list[str] = []
        self.counts: dict[str, int] = {}

    @apply
    def _tagged(self, event: Tagged) -> None:
        self.tags.append(event.tag)
        self.counts[event.tag] = self.counts.get(event.tag, 0) + 1
        if event.explode:
            raise RuntimeError("boom")


def request(aggregate_id: str, *events: Tagged, payload: bytes = b"") -> AppendRequest:
    return AppendRequest(
        aggregate_type=Bag.aggregate_type,
        aggregate_id=aggregate_id,
        events=events,
        payloads=tuple(payload for _ in events),
        event_ids=tuple(f"id-{n}" for n, _ in enumerate(events)),
        expected_version=0,
    )


def test_a_scratch_copy_shares_no_mutable_state_with_the_original() -> None:
    bag = Bag("b-1")
    bag.apply_event(Tagged(tag="a"))
    copy = scratch_copy(bag)
    copy.apply_event(Tagged(tag="b"))
    assert (bag.version, bag.tags, bag.counts) == (1, ["a"], {"a": 1})
    assert isinstance(copy, Bag) and (copy.version, copy.tags) == (2, ["a", "b"])


def test_a_trial_fold_refuses_only_the_request_whose_apply_raises_and_forgets_its_events() -> None:
    index: VersionIndex[Aggregate] = VersionIndex(Bag)
    index.apply("b-1", [Tagged(tag="old")])
    trial = TrialFold(index, "topic[0]", ["b-1"])
    assert trial.committed == {"b-1": 1} and trial.version("b-1") == 1
    x = request("b-1", Tagged(tag="x"))
    assert trial.refusal(x) is None
    error = trial.refusal(request("b-1", Tagged(tag="y"), Tagged(tag="z", explode=True)))
    assert isinstance(error, ApplyError)
    assert "RuntimeError: boom" in str(error) and "version 4 of 'b-1'" in str(error)
    assert "nothing was written" in str(error)
    w = request("b-1", Tagged(tag="w", explode=False))
    assert trial.refusal(w) is None
    # The refused request's half-applied events left no trace on the batch's state...
    admitted = trial.admitted()
    assert admitted.requests == [x, w] and admitted.events == 2
    assert admitted.states["b-1"].tags == ["old", "x", "w"]  # type: ignore[attr-defined]
    assert trial.version("b-1") == 3
    # ...nor on the index, which only the commit changes.
    state = index.snapshot("b-1")
    assert state is not None and state.tags == ["old"]  # type: ignore[attr-defined]


def test_a_committed_trial_fold_becomes_the_index_state_of_the_aggregates_it_accepted() -> None:
    index: VersionIndex[Aggregate] = VersionIndex(Bag)
    index.apply("b-1", [Tagged(tag="old")])
    trial = TrialFold(index, "topic[0]", ["b-1", "b-2", "b-3", "b-1"])
    assert trial.committed == {"b-1": 1, "b-2": 0, "b-3": 0}
    assert trial.refusal(request("b-2", Tagged(tag="new"))) is None
    assert isinstance(trial.refusal(request("b-3", Tagged(tag="bad", explode=True))), ApplyError)
    assert trial.refusal(request("b-1", Tagged(tag="more"))) is None
    admitted = trial.admitted()
    assert set(admitted.states) == {"b-1", "b-2"}  # b-3 had nothing accepted
    index.install(admitted.states)
    assert (index.version("b-1"), index.version("b-2"), index.version("b-3")) == (2, 1, 0)
    state = index.snapshot("b-1")
    assert state is not None and state.tags == ["old", "more"]  # type: ignore[attr-defined]
    assert len(index) == 2


def test_an_event_whose_record_exceeds_the_limit_is_refused_naming_size_and_limit() -> None:
    fits = request("b-1", Tagged(tag="a"), payload=b"x" * 100)
    check_record_sizes(fits, 100 + RECORD_ALLOWANCE + 20, "t")
    check_record_sizes(fits, None, "t")  # no limit known: nothing to check
    with pytest.raises(EventTooLargeError, match=r"about \d+ bytes, over the 500 bytes 't'"):
        check_record_sizes(fits, 500, "t")
