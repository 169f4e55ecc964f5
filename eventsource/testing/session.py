"""Terminal lines and session failures shared by the pytest plugin's fixtures."""

from __future__ import annotations

from typing import NoReturn

import pytest


def _announce(config: pytest.Config, line: str) -> None:
    # Written through the terminal reporter so it shows without -s, in `make test` output.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.ensure_newline()
        reporter.write_line(line, bold=True)
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(line, bold=True)


def _fail_session(request: pytest.FixtureRequest, message: str) -> NoReturn:
    # Stop after this test instead of letting every other test wait for the same dead service.
    request.session.shouldfail = message
    pytest.fail(message, pytrace=False)
