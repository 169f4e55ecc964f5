"""``make demo`` runs as a test: the bank demo against the session's broker.

The demo starts in the background with the module (every test asks for it) and the compose
appender test runs meanwhile; the demo's own test then waits for it to finish.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, cli_env

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("demo")]


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    workdir: Path


@pytest.fixture(scope="module")
def demo(bootstrap_servers: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``python -m examples.bank.demo`` started in the background, in a directory of its own."""
    workdir = tmp_path_factory.mktemp("demo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.bank.demo", "--workdir", str(workdir)],
        cwd=REPO,
        env={**cli_env(bootstrap_servers), "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield Demo(proc, workdir)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_the_compose_appender_appends_into_one_topic_and_can_run_again(
    bootstrap_servers: str, tmp_path: Path, unique_name: str
) -> None:
    # docker-compose's appender: the demo with --append-only into a fixed topic, run twice.
    prefix = f"{unique_name}."
    for _ in range(2):
        out = subprocess.run(
            [
                *(sys.executable, "-m", "examples.bank.demo", "--append-only"),
                *("--topic-prefix", prefix, "--accounts", "20", "--commands", "100"),
            ],
            cwd=tmp_path,  # writes no file: no read model in this mode
            env={**cli_env(bootstrap_servers), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"appended 100 commands to {prefix}bank.account.events" in out.stdout
        assert "replay" not in out.stdout
    assert list(tmp_path.iterdir()) == []


def test_demo_prints_balances_and_replays_to_the_same_balances(demo: Demo) -> None:
    stdout, stderr = demo.proc.communicate(timeout=300)
    assert demo.proc.returncode == 0, stdout + stderr
    # Only the demo's own output: no librdkafka lines (GETPID ... Coordinator load in
    # progress, BGQUEUE ... Purging) on a fresh broker.
    assert stderr == ""
    text = stdout
    assert "appended 3000 commands" in text
    assert "AccountBalances (richest accounts)" in text
    assert "200 accounts" in text
    assert "lag per partition: [0, 0, 0, 0, 0, 0] (total 0)" in text
    assert "the same balances" in text
    assert "Try next" in text and "eventsource events tail" in text
    assert list(demo.workdir.glob("demo*.db"))
