"""The errors reference lists every error class the framework exports."""

from __future__ import annotations

from pathlib import Path

import eventsource.errors

REFERENCE = Path(__file__).parents[2] / "docs" / "reference" / "errors.md"


def test_the_errors_reference_has_a_row_for_every_error_class() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`")
        for line in text.splitlines()
        if line.startswith("| `")
    }
    missing = sorted(set(eventsource.errors.__all__) - rows)
    assert not missing, f"docs/reference/errors.md has no row for {missing}"
