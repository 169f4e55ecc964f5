"""``topics create`` refuses settings under which the events topic could lose records."""

from __future__ import annotations

from typer.testing import CliRunner

from eventsource.cli.app import _register, app

# Nothing listens here: the refusal must come before any broker is contacted.
NOWHERE = "127.0.0.1:9"


def test_a_retention_that_deletes_events_is_refused_before_anything_is_created() -> None:
    _register()
    result = CliRunner().invoke(
        app,
        [
            "topics",
            "create",
            "bank.events",
            "-c",
            "retention.ms=86400000",
            "--bootstrap-servers",
            NOWHERE,
            "--timeout",
            "1",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "bank.events" in result.output and "retention.ms=86400000" in result.output
    # it says why and what to do instead
    assert "EVENTSOURCE_ALLOW_LOSSY_EVENTS_TOPICS" in result.output


def test_compaction_is_refused_too() -> None:
    _register()
    result = CliRunner().invoke(
        app,
        [
            "topics",
            "create",
            "bank.events",
            "-c",
            "cleanup.policy=compact",
            "--bootstrap-servers",
            NOWHERE,
            "--timeout",
            "1",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "cleanup.policy=compact" in result.output
