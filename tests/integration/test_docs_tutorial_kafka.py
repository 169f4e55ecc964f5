"""The tutorial's Kafka block runs against the real broker (after the page's plain blocks)."""

from __future__ import annotations

import pytest

from tests.unit.test_docs_tutorial import TUTORIAL, run_blocks, runnable_blocks

pytestmark = pytest.mark.integration


def test_the_kafka_part_of_tutorial_1_runs_on_the_broker(
    bootstrap_servers: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page reads its settings from the environment, as a user's program would; a
    # unique application id keeps its transactional ids apart from other runs.
    monkeypatch.setenv("EVENTSOURCE_BOOTSTRAP_SERVERS", bootstrap_servers)
    monkeypatch.setenv("EVENTSOURCE_APPLICATION_ID", unique_name)
    blocks = runnable_blocks(TUTORIAL)
    kafka_blocks = [b for b in blocks if b.kind == "integration"]
    assert kafka_blocks, "the tutorial lost its <!-- run: integration --> block"
    module = run_blocks(blocks, "docs_tutorial_1_kafka")
    assert module.result.positions[0].topic == "tutorial.bank.account.events"
    assert module.loaded.version == 2
