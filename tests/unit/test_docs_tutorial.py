"""The tutorial is the repository's files, and its commands run as written.

Every ```python block of ``docs/tutorial/*.md`` is one mkdocs snippet line,
``--8<-- "path"`` or ``--8<-- "path:section"``, so the text shows the files verbatim and
cannot drift from them; the sentence before each block names the file. Every command of
its ```bash blocks is run exactly as written, from a directory laid out like the
repository root: the steps without services here, the others on the real broker and
PostgreSQL in ``tests/integration/test_docs_tutorial_kafka.py`` and
``test_projection_tutorial.py``.

The second half is the runner for pages that keep code in the page itself (the schema
evolution guide): every ```python block after an ``<!-- run -->`` comment runs, in order,
in one module namespace; ``test_*`` functions a block defines are called right after it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial" / "1-aggregates.md"
TUTORIAL_2 = ROOT / "docs" / "tutorial" / "2-projections.md"
PAGES = (TUTORIAL, TUTORIAL_2)
PROGRAMS = ROOT / "examples" / "tutorial"

_FENCE = re.compile(r"^\s*```(?P<lang>[a-z]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:.*-->\s*$")
_INCLUDE = re.compile(r'^--8<--\s+"(?P<path>[^":]+)(?::(?P<section>[a-z_]+))?"$')
_SECTION = re.compile(r"^\s*# --8<-- \[(?P<edge>start|end):(?P<name>[a-z_]+)\]\s*$")


@dataclass(frozen=True)
class Fence:
    """A fenced block of a page: its language, lines, and the prose just before it."""

    page: Path
    line: int
    lang: str
    lines: tuple[str, ...]
    before: str
    not_run: bool


def fences(page: Path) -> list[Fence]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening or not opening.group("lang"):
            index += 1
            continue
        end = index + 1
        while lines[end].strip() != "```":
            end += 1
        prose = [line for line in lines[max(0, index - 4) : index] if line.strip()]
        found.append(
            Fence(
                page=page,
                line=index + 1,
                lang=opening.group("lang"),
                lines=tuple(line.strip() for line in lines[index + 1 : end]),
                before=" ".join(prose),
                not_run=bool(prose) and bool(_NOT_RUN.match(prose[-1])),
            )
        )
        index = end + 1
    return found


def included(fence: Fence) -> tuple[str, str | None]:
    """The file (and section) a ```python block includes; it must include nothing else."""
    assert len(fence.lines) == 1, f"{fence.page.name}:{fence.line}: not a single snippet line"
    match = _INCLUDE.match(fence.lines[0])
    assert match, f"{fence.page.name}:{fence.line}: {fence.lines[0]!r} is not a snippet"
    return match.group("path"), match.group("section")


def sections(path: Path) -> dict[str, str]:
    """The ``# --8<-- [start:name]`` ... ``[end:name]`` parts of a file."""
    parts: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        edge = _SECTION.match(line)
        if edge and edge.group("edge") == "start":
            current = parts.setdefault(edge.group("name"), [])
        elif edge:
            current = None
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body) for name, body in parts.items()}


def commands(page: Path) -> list[str]:
    """The command lines of the page's ```bash blocks, except those marked not run."""
    return [
        line
        for fence in fences(page)
        if fence.lang == "bash" and not fence.not_run
        for line in fence.lines
        if line and not line.startswith("#")
    ]


def repository_like(directory: Path) -> Path:
    """``directory`` laid out like the repository root (``.venv``, ``examples``)."""
    (directory / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (directory / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return directory


def run_command(
    line: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run one command line of a page as a shell would, in ``cwd``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHON"))}
    return subprocess.run(
        shlex.split(line, comments=True),
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_python_block_is_a_file_of_the_repository_named_before_it(page: Path) -> None:
    blocks = [fence for fence in fences(page) if fence.lang == "python"]
    assert blocks
    for fence in blocks:
        path, section = included(fence)
        assert (ROOT / path).is_file(), f"{page.name}:{fence.line}: {path} does not exist"
        if section is not None:
            assert section in sections(ROOT / path), f"{path} has no section {section!r}"
        assert f"`{path}`" in fence.before, f"{page.name}:{fence.line}: the text must name {path}"


def test_every_tutorial_program_and_each_of_its_parts_is_shown() -> None:
    shown = {included(f) for page in PAGES for f in fences(page) if f.lang == "python"}
    for program in sorted(PROGRAMS.glob("*.py")):
        if program.name == "__init__.py":
            continue
        path = str(program.relative_to(ROOT))
        parts = sections(program)
        expected = {(path, name) for name in parts} if parts else {(path, None)}
        assert expected <= shown, f"{path} is not shown whole in the tutorial"


def test_each_part_of_a_file_is_the_text_between_its_markers() -> None:
    parts = sections(PROGRAMS / "in_memory.py")
    assert list(parts) == ["store", "repository"]
    assert parts["store"].startswith("from decimal import Decimal")
    assert "8<--" not in "".join(parts.values())


def test_every_step_gives_the_command_that_runs_it() -> None:
    assert commands(TUTORIAL) == [
        ".venv/bin/pytest examples/tutorial/test_account.py",
        ".venv/bin/python -m examples.tutorial.in_memory",
        "make kafka-up                                   # once: a local broker on 127.0.0.1:9092",
        ".venv/bin/python -m examples.tutorial.on_kafka",
    ]
    assert [line.split()[:4] for line in commands(TUTORIAL_2)] == [
        [".venv/bin/python", "-m", "examples.tutorial.project"],
        [".venv/bin/python", "-m", "examples.tutorial.read_your_writes"],
        [".venv/bin/python", "-m", "eventsource.testing.services", "run"],
    ]


@pytest.mark.parametrize("line", commands(TUTORIAL)[:2])
def test_the_steps_without_a_broker_run_as_written(line: str, tmp_path: Path) -> None:
    result = run_command(line, repository_like(tmp_path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    if "in_memory" in line:  # the output the page shows
        shown = next(f for f in fences(TUTORIAL) if f.lang == "text" and "acc-1: 20.50" in f.lines)
        assert result.stdout.splitlines() == list(shown.lines)


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
