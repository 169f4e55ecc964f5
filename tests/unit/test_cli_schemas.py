"""`eventsource schemas generate|check` on temporary modules and schema directories."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventsource.cli.app import _register, app

REPO = Path(__file__).resolve().parents[2]

V1 = """
from eventsource.domain import Event

class TicketOpened(Event):
    __namespace__ = "help.desk"
    title: str
"""

V2_COMPATIBLE = V1 + "    priority: int = 3\n"
V2_BREAKING = V1 + "    owner: str\n"
V2_RENAMED = V1.replace("TicketOpened", "TicketFiled")
V2_RENAMED_WITH_UPCASTER = (
    V2_RENAMED
    + """
from eventsource.codec import Upcasters

upcasters = Upcasters()

@upcasters.upcaster("help.desk.TicketOpened", from_version=1, to_type="help.desk.TicketFiled")
def opened_is_filed(data):
    return data
"""
)


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    _register()
    yield CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def module(project: Path, source: str) -> str:
    """Write ``source`` as a fresh module (a new name each time: imports are cached)."""
    name = f"events_{uuid.uuid4().hex[:8]}"
    (project / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def test_generate_writes_v1_then_only_changed_models(runner: CliRunner, project: Path) -> None:
    result = runner.invoke(app, ["schemas", "generate", module(project, V1)])
    assert result.exit_code == 0, result.output
    assert "wrote schemas/help.desk.TicketOpened.v1.avsc" in result.output
    again = runner.invoke(app, ["schemas", "generate", module(project, V1)])
    assert again.exit_code == 0 and "0 new schema file(s)" in again.output
    changed = runner.invoke(app, ["schemas", "generate", module(project, V2_COMPATIBLE)])
    assert "help.desk.TicketOpened.v2.avsc" in changed.output
    assert sorted(p.name for p in (project / "schemas").iterdir()) == [
        "help.desk.TicketOpened.v1.avsc",
        "help.desk.TicketOpened.v2.avsc",
    ]


def test_check_passes_a_compatible_release(runner: CliRunner, project: Path) -> None:
    runner.invoke(app, ["schemas", "generate", module(project, V1)])
    v2 = module(project, V2_COMPATIBLE)
    runner.invoke(app, ["schemas", "generate", v2])
    result = runner.invoke(app, ["schemas", "check", v2])
    assert result.exit_code == 0, result.output
    assert "1 event type(s) match schemas and are BACKWARD compatible" in result.output


def test_check_fails_with_one_line_per_problem_naming_type_and_field(
    runner: CliRunner, project: Path
) -> None:
    runner.invoke(app, ["schemas", "generate", module(project, V1)])
    result = runner.invoke(app, ["schemas", "check", module(project, V2_BREAKING)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("help.desk.TicketOpened: field 'owner' added since")
    assert lines[1].startswith("help.desk.TicketOpened: not BACKWARD compatible")
    assert "field 'owner': has no default" in lines[1]


def test_check_honours_the_mode(runner: CliRunner, project: Path) -> None:
    runner.invoke(app, ["schemas", "generate", module(project, V2_COMPATIBLE)])
    without_priority = module(project, V1)
    runner.invoke(app, ["schemas", "generate", without_priority])
    assert runner.invoke(app, ["schemas", "check", without_priority]).exit_code == 0
    forward = runner.invoke(app, ["schemas", "check", without_priority, "--mode", "forward"])
    assert forward.exit_code == 0  # priority had a default: old readers fill it in
    breaking = module(project, V1.replace("title: str", "owner: str"))
    runner.invoke(app, ["schemas", "generate", breaking])
    full = runner.invoke(app, ["schemas", "check", breaking, "-m", "FULL"])
    assert full.exit_code == 1 and "not FULL compatible" in full.output


def test_check_reports_a_rename_without_upcaster(runner: CliRunner, project: Path) -> None:
    runner.invoke(app, ["schemas", "generate", module(project, V1)])
    renamed = module(project, V2_RENAMED)
    runner.invoke(app, ["schemas", "generate", renamed])
    result = runner.invoke(app, ["schemas", "check", renamed])
    assert result.exit_code == 1
    assert result.output.startswith("help.desk.TicketOpened: v1..v1 are released")


def test_check_finds_upcaster_registries_in_the_modules(runner: CliRunner, project: Path) -> None:
    runner.invoke(app, ["schemas", "generate", module(project, V1)])
    renamed = module(project, V2_RENAMED_WITH_UPCASTER)
    runner.invoke(app, ["schemas", "generate", renamed])
    result = runner.invoke(app, ["schemas", "check", renamed])
    assert result.exit_code == 0, result.output


def test_check_of_the_repository_bank_schemas_passes(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    result = runner.invoke(app, ["schemas", "check", "examples.bank.domain", "--dir", "schemas"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schemas", "check", "no_such_module_zz"], "cannot import module 'no_such_module_zz'"),
        (["schemas", "generate", "json"], "no Event subclass is defined in json"),
        (["schemas", "check", "examples.bank.domain", "--dir", "nowhere"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    runner: CliRunner, project: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_an_unknown_mode_is_a_usage_error(runner: CliRunner, project: Path) -> None:
    result = runner.invoke(app, ["schemas", "check", "examples.bank.domain", "--mode", "SIDEWAYS"])
    assert result.exit_code == 2


def test_a_module_that_fails_to_import_is_reported(runner: CliRunner, project: Path) -> None:
    broken = module(project, "raise RuntimeError('boom')\n")
    result = runner.invoke(app, ["schemas", "check", broken])
    assert result.exit_code == 2 and "failed with RuntimeError: boom" in result.stderr


def pyproject(project: Path, modules: list[str], schema_dir: str = "released") -> None:
    names = ", ".join(f'"{m}"' for m in modules)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n\n[tool.eventsource]\nevent-modules = [{names}]\n'
        f'schema-dir = "{schema_dir}"\n'
    )


def test_generate_and_check_alone_read_the_project_table(runner: CliRunner, project: Path) -> None:
    pyproject(project, [module(project, V1)])
    generated = runner.invoke(app, ["schemas", "generate"])
    assert generated.exit_code == 0, generated.output
    assert (project / "released" / "help.desk.TicketOpened.v1.avsc").is_file()
    checked = runner.invoke(app, ["schemas", "check"])
    assert checked.exit_code == 0, checked.output
    assert "1 event type(s) match released" in checked.output


def test_check_alone_works_from_a_subdirectory_of_the_project(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject(project, [module(project, V1)])
    assert runner.invoke(app, ["schemas", "generate"]).exit_code == 0
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    checked = runner.invoke(app, ["schemas", "check"])
    assert checked.exit_code == 0, checked.output


def test_check_json_reports_the_problems(runner: CliRunner, project: Path) -> None:
    runner.invoke(app, ["schemas", "generate", module(project, V1)])
    breaking = module(project, V2_BREAKING)
    result = runner.invoke(app, ["schemas", "check", breaking, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["mode"] == "BACKWARD"
    assert report["modules"] == [breaking] and report["directory"] == "schemas"
    assert len(report["problems"]) == 2
    good = runner.invoke(app, ["schemas", "check", module(project, V1), "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["ok"] is True


def test_the_directory_flag_is_s_because_d_means_database_url(
    runner: CliRunner, project: Path
) -> None:
    name = module(project, V1)
    assert runner.invoke(app, ["schemas", "generate", name, "-s", "elsewhere"]).exit_code == 0
    assert (project / "elsewhere" / "help.desk.TicketOpened.v1.avsc").is_file()
    assert runner.invoke(app, ["schemas", "check", name, "-d", "elsewhere"]).exit_code == 2


def test_without_modules_or_project_table_it_says_what_to_add(
    runner: CliRunner, project: Path
) -> None:
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = runner.invoke(app, ["schemas", "check"])
    assert result.exit_code == 2
    assert "add event-modules to [tool.eventsource]" in result.stderr


def test_make_lint_checks_the_schemas_from_the_repository_table() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "$(BIN)/eventsource schemas check\n" in makefile
    assert "[tool.eventsource]\n" in (REPO / "pyproject.toml").read_text()
