"""The command line's parsing, help, usage errors and secret redaction (no broker needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from eventsource.cli.app import _register, app
from eventsource.cli.common import PropertyOpt, exit_codes, load_settings
from eventsource.cli.reading import StartAt
from eventsource.errors import ConfigurationError, StoreUnavailableError

SECRET = "hunter2-Sup3rSecret"


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    _register()
    yield CliRunner()


def all_commands() -> list[tuple[str, ...]]:
    _register()
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(get_command(app), ())
    # `dev kafka ...` belongs to the launcher's module, which documents its own help.
    return [c for c in found if c[0] != "dev"]


def test_the_command_tree_has_the_documented_commands() -> None:
    commands = {" ".join(c) for c in all_commands()}
    assert {"topics create", "topics describe", "events tail", "events show"} <= commands


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(
    runner: CliRunner, command: tuple[str, ...]
) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "topics" in result.output


def test_unknown_option_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["events", "tail", "--no-such-flag"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "tail", "-t", "x", "--from", "yesterday"], "is not 'beginning', 'end'"),
        (["events", "tail", "-a", "no_such_mod_q:Account"], "cannot import module"),
        (["events", "tail", "-a", "examples.bank.domain:MoneyDeposited"], "not an aggregate"),
        (["events", "tail"], "name the topic with --topic"),
        (["topics", "create"], "name at least one topic"),
        (["topics", "describe", "t", "-X", "nonsense"], "key=value"),
        (["status", "examples.bank.domain:Account"], "which is not a projection"),
        (["status", "examples.bank.projections"], "not of the form"),
        (["run", "examples.bank.projections:AccountBalances", "--log-level", "loud"], "log level"),
        (["run", "examples.bank.projections:AccountBalances", "--http-port", "70000"], "http_port"),
        (
            ["run", *["examples.bank.projections:AccountBalances"] * 2, "--name", "x"],
            "override one projection",
        ),
        (
            ["replay", "examples.bank.projections:AccountBalances", "--from", "soon"],
            "is not 'beginning', 'end'",
        ),
        (
            ["replay", "examples.bank.projections:AccountBalances", "--name", "Bad-Name"],
            "projection name 'Bad-Name' is not allowed",
        ),
        (["dlq", "list", "examples.bank.domain:Account"], "which is not a projection"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_start_positions_parse() -> None:
    assert StartAt.parse("beginning") == StartAt("beginning")
    assert StartAt.parse("end") == StartAt("end")
    assert StartAt.parse("42") == StartAt("offset", 42)
    assert StartAt.parse("1970-01-01T00:00:01Z") == StartAt("timestamp", 1000)
    assert StartAt.parse("1970-01-01T00:00:02") == StartAt("timestamp", 2000)


def leaky_app() -> typer.Typer:
    """A command that fails with errors quoting the secret it was configured with."""
    leaky = typer.Typer()

    @leaky.command()
    def connect(
        prop: PropertyOpt = None, database_url: str = "sqlite://", kind: str = "store"
    ) -> None:
        with exit_codes():
            load_settings(None, prop, database_url)
            if kind == "store":
                raise StoreUnavailableError(f"auth failed with password {SECRET}")
            if kind == "config":
                raise ConfigurationError(f"bad value {SECRET}")
            raise RuntimeError(f"driver said: postgresql://app:{SECRET}@db/x")

    return leaky


@pytest.mark.parametrize(("kind", "code"), [("store", 1), ("config", 2), ("other", 1)])
def test_secrets_from_settings_never_reach_error_output(
    runner: CliRunner, kind: str, code: int
) -> None:
    result = runner.invoke(
        leaky_app(),
        ["-X", f"sasl.password={SECRET}", "--database-url", "sqlite://", "--kind", kind],
    )
    assert result.exit_code == code
    assert SECRET not in result.output
    assert "***" in result.stderr


def test_database_password_is_scrubbed_from_error_output(runner: CliRunner) -> None:
    result = runner.invoke(
        leaky_app(), ["--database-url", f"postgresql://app:{SECRET}@db/x", "--kind", "store"]
    )
    assert result.exit_code == 1
    assert SECRET not in result.output
