"""The README's code runs as the README says, and runs again: each run opens a new account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_snippet_runs_twice_on_the_broker(
    bootstrap_servers: str, unique_name: str
) -> None:
    [snippet] = readme_python_blocks()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHON"))}
    env.update(
        EVENTSOURCE_BOOTSTRAP_SERVERS=bootstrap_servers, EVENTSOURCE_APPLICATION_ID=unique_name
    )
    outputs = []
    for _ in range(2):
        # As the README says: the file in the repository root, run from there.
        result = subprocess.run(
            [sys.executable, "-"],
            input=snippet,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        outputs.append(result.stdout.splitlines())
    for lines in outputs:
        assert "is at version 2, expected 0; nothing was written" in lines[0]
        assert lines[1].endswith(": balance 10.00")
    assert outputs[0][1] != outputs[1][1], "both runs used the same account"
