"""Fixtures of the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsource.kafka.broker_process import free_port
from eventsource.kafka.launcher import LocalKafka


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A private broker on free ports that the test may stop, kill and restart."""
    kafka = LocalKafka(home=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    kafka.start(timeout=120)
    try:
        yield kafka
    finally:
        kafka.kill()
