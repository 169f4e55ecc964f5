"""The group commit's cheap result constructors make the very objects the dataclasses do."""

from __future__ import annotations

from dataclasses import fields

from eventsource.domain import Position
from eventsource.store.kafka.results import new_position, new_result
from eventsource.store.port import AppendResult


def test_a_position_made_cheaply_equals_hashes_and_prints_as_the_dataclass_does() -> None:
    cheap, made = new_position("bank.account.events", 3, 41), Position("bank.account.events", 3, 41)
    assert type(cheap) is Position
    assert (cheap == made, hash(cheap) == hash(made), repr(cheap) == repr(made)) == (True,) * 3
    assert cheap != new_position("bank.account.events", 3, 42)


def test_a_result_made_cheaply_equals_hashes_and_prints_as_the_dataclass_does() -> None:
    positions = (Position("t", 0, 7), Position("t", 0, 8))
    cheap, made = new_result("acc-1", 2, positions), AppendResult("acc-1", 2, positions)
    assert type(cheap) is AppendResult
    assert (cheap == made, hash(cheap) == hash(made), repr(cheap) == repr(made)) == (True,) * 3


def test_the_cheap_constructors_set_every_field_the_dataclasses_have() -> None:
    # A field added to either class must be set by its cheap constructor too.
    assert [f.name for f in fields(Position)] == ["topic", "partition", "offset"]
    assert [f.name for f in fields(AppendResult)] == ["aggregate_id", "version", "positions"]
    assert not hasattr(Position, "__post_init__") and not hasattr(AppendResult, "__post_init__")
