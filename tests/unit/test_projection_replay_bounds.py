"""Replay ranges: how start and stop offsets are computed from the asks, and the ``after=``
positions every "as of now" end takes alike (no broker)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import get_type_hints

import pytest

from eventsource.domain import Position
from eventsource.errors import ConfigurationError
from eventsource.projection import ProjectionRunner
from eventsource.projection.bounds import Bounds, resolve_bounds, to_millis
from eventsource.projection.rebuild import rebuild
from eventsource.projection.replay import replay

A0, A1 = ("a.events", 0), ("a.events", 1)
MARKS = {A0: (0, 100), A1: (10, 50)}


def test_by_default_a_replay_covers_everything_from_the_oldest_record_to_the_end() -> None:
    assert resolve_bounds(MARKS) == Bounds({A0: 0, A1: 10}, {A0: 100, A1: 50})


def test_one_start_offset_applies_to_every_partition() -> None:
    assert resolve_bounds(MARKS, from_offset=20).start == {A0: 20, A1: 20}


def test_a_start_offset_per_partition_leaves_the_others_at_the_beginning() -> None:
    assert resolve_bounds(MARKS, from_offset={A1: 30}).start == {A0: 0, A1: 30}


def test_the_stop_offset_is_inclusive() -> None:
    assert resolve_bounds(MARKS, to_offset={A0: 41}).stop == {A0: 42, A1: 50}


def test_offsets_outside_the_log_are_clamped_to_what_is_there() -> None:
    bounds = resolve_bounds(MARKS, from_offset=5, to_offset=1_000)
    assert bounds == Bounds({A0: 5, A1: 10}, {A0: 100, A1: 50})


def test_a_start_time_uses_the_offsets_kafka_found_and_the_end_where_none() -> None:
    bounds = resolve_bounds(MARKS, from_time_offsets={A0: 70, A1: -1})
    assert bounds.start == {A0: 70, A1: 50}


def test_a_stop_time_stops_before_the_first_later_record() -> None:
    bounds = resolve_bounds(MARKS, to_time_offsets={A0: 60, A1: -1})
    assert bounds.stop == {A0: 60, A1: 50}


def test_a_start_after_the_stop_is_refused_with_the_partition_named() -> None:
    with pytest.raises(ConfigurationError, match=r"a\.events\[0\]"):
        resolve_bounds(MARKS, from_offset={A0: 80}, to_offset={A0: 20})


def test_start_offset_and_start_time_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        resolve_bounds(MARKS, from_offset=1, from_time_offsets={A0: 1})


def test_stop_offset_and_stop_time_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        resolve_bounds(MARKS, to_offset=1, to_time_offsets={A0: 1})


def test_negative_offsets_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="offsets are >= 0"):
        resolve_bounds(MARKS, from_offset=-3)


def test_times_must_carry_a_timezone() -> None:
    with pytest.raises(ConfigurationError, match="no timezone"):
        to_millis(datetime(2026, 1, 1, 12, 0))


def test_times_become_epoch_milliseconds() -> None:
    assert to_millis(datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)) == 1500


@pytest.mark.parametrize(
    "function", [rebuild, ProjectionRunner.run_until_caught_up], ids=["rebuild", "runner"]
)
def test_after_takes_the_same_type_and_default_everywhere_a_range_ends_as_of_now(
    function: Callable[..., object],
) -> None:
    def after(f: Callable[..., object]) -> tuple[object, object]:
        hints = get_type_hints(f)
        return hints["after"], inspect.signature(f).parameters["after"].default

    assert after(function) == after(replay) == (Sequence[Position], ())
