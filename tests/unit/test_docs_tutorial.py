"""The tutorial's code runs: every ```python block after an ``<!-- run -->`` comment.

Blocks of a page run in order in one module namespace, as a reader would type them into one
file; ``test_*`` functions a block defines are called right after it. ``--8<-- "path"``
lines (mkdocs snippets) are replaced by the file they include, so included code runs too.
Blocks marked ``<!-- run: integration -->`` need a broker; they run in
``tests/integration/test_docs_tutorial_kafka.py`` after this page's plain blocks.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial" / "1-aggregates.md"

_MARK = re.compile(r"^<!--\s*run(?::\s*(?P<kind>[a-z-]+))?\s*-->\s*$")
_SNIPPET = re.compile(r'^--8<--\s+"(?P<path>[^"]+)"\s*$')


@dataclass(frozen=True)
class Block:
    """One runnable code block: where it starts, its kind and its source."""

    path: Path
    line: int
    kind: str
    source: str


def runnable_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The marked ```python blocks of a markdown page, snippets resolved."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        mark = _MARK.match(lines[index].strip())
        index += 1
        if not mark:
            continue
        while index < len(lines) and not lines[index].strip():
            index += 1
        if index >= len(lines) or lines[index].strip() != "```python":
            raise ValueError(f"{path}:{index}: a run marker must be followed by a ```python block")
        start = index + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end >= len(lines):
            raise ValueError(f"{path}:{start}: the ```python block is never closed")
        source = "\n".join(_resolve(line, root, path) for line in lines[start:end])
        blocks.append(Block(path, start + 1, mark.group("kind") or "unit", source))
        index = end + 1
    return blocks


def run_blocks(blocks: list[Block], module_name: str) -> types.ModuleType:
    """Execute blocks in one fresh module, calling the ``test_*`` functions each defines.

    The namespace is a real module in ``sys.modules`` while it runs, because pydantic and
    ``@apply`` resolve annotations through the defining module.
    """
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module
    try:
        for block in blocks:
            before = set(vars(module))
            # Leading newlines make traceback line numbers those of the markdown page.
            code = compile("\n" * (block.line - 1) + block.source, str(block.path), "exec")
            exec(code, vars(module))
            for name in sorted(set(vars(module)) - before):
                function = vars(module)[name]
                if name.startswith("test_") and callable(function):
                    function()
    finally:
        del sys.modules[module_name]
    return module


def _resolve(line: str, root: Path, page: Path) -> str:
    snippet = _SNIPPET.match(line.strip())
    if not snippet:
        return line
    included = root / snippet.group("path")
    if not included.is_file():
        raise ValueError(f"{page}: snippet {snippet.group('path')!r} does not exist")
    return included.read_text(encoding="utf-8")


# the tutorial ----------------------------------------------------------------------------
def test_part_1_has_its_runnable_blocks_marked() -> None:
    kinds = [block.kind for block in runnable_blocks(TUTORIAL)]
    assert kinds.count("unit") >= 4
    assert kinds.count("integration") == 1


def test_part_1_shows_the_bank_domain_verbatim() -> None:
    domain = (ROOT / "examples" / "bank" / "domain.py").read_text(encoding="utf-8")
    assert runnable_blocks(TUTORIAL)[0].source.strip() == domain.strip()


def test_every_unit_block_of_part_1_runs() -> None:
    blocks = [b for b in runnable_blocks(TUTORIAL) if b.kind == "unit"]
    module = run_blocks(blocks, "docs_tutorial_1_unit")
    account = module.Repository(module.store, module.Account).get("acc-1")
    assert account.balance == module.Decimal("20.50")


# the runner itself -----------------------------------------------------------------------
def test_a_failing_test_function_in_a_block_fails_the_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- run -->\n```python\ndef test_wrong() -> None:\n    assert 1 == 2\n```\n",
        encoding="utf-8",
    )
    with pytest.raises(AssertionError):
        run_blocks(runnable_blocks(page, tmp_path), "docs_failing_page")


def test_an_error_names_the_page_and_line_of_the_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("intro\n\n<!-- run -->\n```python\nx = 1\nraise KeyError(x)\n```\n")
    with pytest.raises(KeyError) as raised:
        run_blocks(runnable_blocks(page, tmp_path), "docs_error_page")
    frames = [(str(entry.frame.code.path), entry.lineno + 1) for entry in raised.traceback]
    assert (str(page), 6) in frames


def test_unmarked_blocks_do_not_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nraise SystemExit\n```\n<!-- run -->\n```python\nok = 1\n```\n")
    assert [b.source for b in runnable_blocks(page, tmp_path)] == ["ok = 1"]


def test_a_marker_without_a_python_block_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- run -->\n```text\nnot python\n```\n")
    with pytest.raises(ValueError, match="must be followed by a ```python block"):
        runnable_blocks(page, tmp_path)


def test_an_unclosed_block_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- run -->\n```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        runnable_blocks(page, tmp_path)


def test_a_missing_snippet_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('<!-- run -->\n```python\n--8<-- "nowhere.py"\n```\n')
    with pytest.raises(ValueError, match=r"snippet 'nowhere\.py' does not exist"):
        runnable_blocks(page, tmp_path)
