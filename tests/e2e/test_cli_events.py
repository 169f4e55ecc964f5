"""``eventsource topics`` and ``events`` against the real broker, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.port import AppendResult
from eventsource.store.repository import Repository
from eventsource.testing.plugin import unique_name_for
from eventsource.testing.seed import wait_readable
from examples.bank.domain import Account
from tests.e2e.conftest import ACCOUNT, EVENTSOURCE, Cli, cli_env, parsed

pytestmark = pytest.mark.integration


def append_history(settings: KafkaSettings, prefix: str) -> tuple[str, list[AppendResult]]:
    """Three accounts with a few commands each, through the real store; returns the topic."""
    results: list[AppendResult] = []
    with KafkaEventStore(settings, [Account], partitions=3, topic_prefix=prefix) as store:
        accounts = Repository(store, Account)
        for n in range(3):
            account = accounts.create(f"acc-{n}")
            account.open(owner=f"owner {n}")
            account.deposit(Decimal("100.00") + n)
            results.append(accounts.save(account))
            account.withdraw(Decimal("25.50"))
            results.append(accounts.save(account))
        topic = store.topic_for("bank.account")
    # Commit markers land after an append returns: the CLI reads "up to now" at once.
    wait_readable(settings, [p for r in results for p in r.positions])
    return topic, results


@pytest.fixture(scope="module")
def history(kafka_settings: KafkaSettings) -> tuple[str, list[AppendResult]]:
    """One history for the tests that only read it (the follow test appends: its own)."""
    return append_history(kafka_settings, f"{unique_name_for('cli_events')}.")


def test_tail_json_lines_parse_and_match_what_was_appended(
    cli: Cli, history: tuple[str, list[AppendResult]]
) -> None:
    topic, results = history
    out = cli(
        "events", "tail", "-t", topic, "-a", ACCOUNT, "--from", "beginning", "--no-follow", "--json"
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    appended = {(p.topic, p.partition, p.offset) for r in results for p in r.positions}
    assert {(r["topic"], r["partition"], r["offset"]) for r in rows} == appended
    by_account: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
    for row in sorted(rows, key=lambda r: (r["key"], r["version"])):
        assert row["headers"]["ce_subject"] == row["key"]
        by_account.setdefault(row["key"], []).append((row["version"], row["type"], row["data"]))
    assert by_account["acc-1"] == [
        (1, "bank.account.AccountOpened", {"owner": "owner 1", "currency": "EUR"}),
        (2, "bank.account.MoneyDeposited", {"amount": "101.00"}),
        (3, "bank.account.MoneyWithdrawn", {"amount": "25.50"}),
    ]
    assert sorted(by_account) == ["acc-0", "acc-1", "acc-2"]


def test_tail_from_an_offset_or_a_later_time_skips_earlier_records(
    cli: Cli, history: tuple[str, list[AppendResult]]
) -> None:
    topic, _ = history

    def positions(start: str) -> set[tuple[int, int]]:
        out = cli("events", "tail", "-t", topic, "--from", start, "--no-follow", "--json")
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        return {(r["partition"], r["offset"]) for r in rows}

    everything = positions("beginning")
    assert len(everything) == 9
    assert positions("1") == {(p, o) for p, o in everything if o >= 1}
    later = cli("events", "tail", "-t", topic, "--from", "2100-01-01T00:00:00Z", "--no-follow")
    assert later.returncode == 0 and later.stdout == ""


def test_tail_follows_new_events_until_the_limit(
    bootstrap_servers: str, kafka_settings: KafkaSettings, unique_name: str, tmp_path
) -> None:
    topic, results = append_history(kafka_settings, f"{unique_name}.")
    # The tail starts right after acc-2's last event: the next record there is the one
    # appended below, however long the CLI takes to start (no sleep-and-hope for "at end").
    last = results[-1].positions[-1]
    tail = subprocess.Popen(
        [
            str(EVENTSOURCE),
            "events",
            "tail",
            "-t",
            topic,
            "-a",
            ACCOUNT,
            "--json",
            "--limit",
            "1",
            "--partition",
            str(last.partition),
            "--from",
            str(last.offset + 1),
        ],
        cwd=tmp_path,
        env=cli_env(bootstrap_servers),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with KafkaEventStore(
        kafka_settings, [Account], partitions=3, topic_prefix=f"{unique_name}."
    ) as store:
        accounts = Repository(store, Account)
        account = accounts.get("acc-2")
        account.deposit(Decimal("7.00"))
        accounts.save(account)
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    row = json.loads(out)
    assert (row["key"], row["version"], row["data"]) == ("acc-2", 4, {"amount": "7.00"})


def test_show_prints_one_aggregate_in_version_order(
    cli: Cli, history: tuple[str, list[AppendResult]]
) -> None:
    topic, _ = history
    out, human, missing = cli.all(
        ["events", "show", "acc-2", "-t", topic, "-a", ACCOUNT, "--json"],
        ["events", "show", "acc-2", "-t", topic, "-a", ACCOUNT],
        ["events", "show", "nobody", "-t", topic, "-a", ACCOUNT],
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["key"], r["version"]) for r in rows] == [("acc-2", 1), ("acc-2", 2), ("acc-2", 3)]
    assert "MoneyWithdrawn" in human.stdout and '"amount":"25.50"' in human.stdout
    assert missing.returncode == 1
    assert "has no events" in missing.stderr


def test_topics_create_then_describe(cli: Cli, unique_name: str) -> None:
    topic = f"{unique_name}.orders.events"
    created = cli.json("topics", "create", topic, "--partitions", "4")
    assert created == [{"topic": topic, "created": True, "partitions": 4}]
    again, other_count, described = cli.all(
        ["topics", "create", topic, "--partitions", "4", "--json"],
        ["topics", "create", topic, "--partitions", "5"],
        ["topics", "describe", topic, "--json"],
    )
    assert parsed(again)[0]["created"] is False
    assert other_count.returncode == 2
    assert "exists with 4 partitions" in other_count.stderr
    info = parsed(described)
    assert info["partitions"] == 4
    assert info["config"]["retention.ms"] == "-1"
    assert info["end_offsets"] == {"0": 0, "1": 0, "2": 0, "3": 0}


def test_unreachable_broker_is_an_operational_failure(cli: Cli) -> None:
    out = cli("topics", "describe", "x", "-b", "127.0.0.1:1", "--timeout", "2")
    assert out.returncode == 1
    assert out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr
