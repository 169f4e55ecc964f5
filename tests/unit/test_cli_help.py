"""What ``--help`` shows a new user: defaults, flags without types, one meaning per flag."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from eventsource.cli.app import _register, app
from eventsource.service.supervisor import ExitCode

EVENTSOURCE = Path(sys.executable).parent / "eventsource"
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    _register()
    yield CliRunner()


def commands() -> list[tuple[tuple[str, ...], Any]]:
    _register()
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.append((path, command))

    walk(get_command(app), ())
    return [(p, c) for p, c in found if p[0] != "dev"]


def help_text(*command: str) -> str:
    """``eventsource ... --help`` as the installed command prints it (wide, no colour)."""
    result = subprocess.run(
        [str(EVENTSOURCE), *command, "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=True,
    )
    return " ".join(result.stdout.split())


def test_run_help_shows_the_defaults_of_broker_database_port_and_log_level() -> None:
    text = help_text("run")
    for default in (
        "[default: ($EVENTSOURCE_BOOTSTRAP_SERVERS or 127.0.0.1:9092)]",
        "[default: ($EVENTSOURCE_DATABASE_URL or sqlite:///.eventsource/readmodels.db)]",
        "[default: ($EVENTSOURCE_HTTP_PORT or 9464)]",
        "[default: ($EVENTSOURCE_LOG_LEVEL or INFO)]",
    ):
        assert default in text, default


def test_root_help_shows_the_connect_timeout_and_the_exit_codes() -> None:
    text = help_text()
    assert "--connect-timeout" in text
    assert "[default: ($EVENTSOURCE_CONNECT_TIMEOUT_S or 5)]" in text
    assert "130 interrupted" in text


def test_flags_show_no_type_and_options_keep_theirs() -> None:
    text = help_text("dlq", "list")
    assert "<bool>" not in text
    assert re.search(r"--json\s+Machine-readable", text)
    assert re.search(r"--limit\s+<int range>", text)


@pytest.mark.parametrize(
    ("path", "command"), commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_d_means_the_database_url_in_every_command(path: tuple[str, ...], command: Any) -> None:
    for param in command.params:
        if "-d" in getattr(param, "opts", []):
            assert param.opts == ["--database-url", "-d"], (path, param.opts)


def test_every_exit_code_is_in_the_one_documented_table() -> None:
    page = (DOCS / "reference" / "cli.md").read_text()
    table = page.split("## Exit codes", 1)[1].split("## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}
    others = [
        p
        for p in DOCS.rglob("*.md")
        if p.name != "cli.md" and re.search(r"^\| ?code ?\|", p.read_text(), re.MULTILINE)
    ]
    assert others == [], "one exit-code table only: link docs/reference/cli.md#exit-codes"
