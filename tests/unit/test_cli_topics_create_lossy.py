"""``topics create`` refuses settings under which the events topic could lose records."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from eventsource.cli.app import _register, app

# Nothing listens here: the refusal must come before any broker is contacted.
NOWHERE = "127.0.0.1:9"


@pytest.mark.parametrize(
    "setting", ["retention.ms=86400000", "retention.bytes=1073741824", "cleanup.policy=compact"]
)
def test_a_setting_that_drops_events_is_refused_before_anything_is_created(setting: str) -> None:
    _register()
    args = ["topics", "create", "bank.events", "-c", setting, "-b", NOWHERE, "--timeout", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "bank.events" in result.output and setting in result.output
    # it says why and what to do instead
    assert f"Drop -c {setting}" in result.output
    assert "EVENTSOURCE_ALLOW_LOSSY_EVENTS_TOPICS" in result.output
