"""``eventsource dlq discard|unpark --offsets``: how an offset range is read."""

from __future__ import annotations

import pytest

from eventsource.cli.dlq import parse_offsets
from eventsource.errors import ConfigurationError


def test_an_offset_range_and_a_single_offset_are_read_on_the_given_partition() -> None:
    assert parse_offsets("10-20", 0) == (0, 10, 20)
    assert parse_offsets("7", 2) == (2, 7, 7)
    assert parse_offsets(None, 0) is None


@pytest.mark.parametrize("text", ["ten", "1-x", "-3", ""])
def test_an_offset_range_that_is_not_numbers_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--offsets"):
        parse_offsets(text, 0)
