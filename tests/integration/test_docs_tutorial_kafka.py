"""Tutorial part 1's Kafka step runs as written on the real broker, and runs again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_docs_tutorial import TUTORIAL, commands, repository_like, run_command

pytestmark = pytest.mark.integration


def test_the_kafka_step_of_tutorial_1_runs_as_written_twice(
    bootstrap_servers: str, unique_name: str, tmp_path: Path
) -> None:
    [line] = [line for line in commands(TUTORIAL) if "on_kafka" in line]
    # The program reads the broker from the environment, as the page says; a unique
    # application id keeps its transactional ids apart from other runs.
    env = {"EVENTSOURCE_BOOTSTRAP_SERVERS": bootstrap_servers}
    env["EVENTSOURCE_APPLICATION_ID"] = unique_name
    cwd = repository_like(tmp_path)
    for _ in range(2):  # each run opens a new account
        result = run_command(line, cwd, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        positions, refusal = result.stdout.splitlines()
        assert "topic='tutorial.bank.account.events'" in positions
        assert "is at version 2, expected 1; nothing was written" in refusal
