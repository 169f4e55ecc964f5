"""docs/reference/cli.md is generated from the Typer app and must match it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_cli_reference_page_matches_the_commands() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", DOCS / "gen_cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    expected = generator.render()
    actual = (DOCS / "reference" / "cli.md").read_text()
    assert actual == expected, "run `.venv/bin/python docs/gen_cli_reference.py` and commit"
    for command in (
        "run",
        "status",
        "replay",
        "rebuild",
        "topics create",
        "events tail",
        "dlq replay",
    ):
        assert f"## `eventsource {command}`" in actual
