"""``eventsource dlq list|replay``: poison records go to the DLQ and come back once fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource.kafka.config import KafkaSettings
from tests.e2e.conftest import Cli, parsed, read_balances
from tests.e2e.helpers import expected_balances, read_topic, seed_bank

pytestmark = pytest.mark.integration

#: A balances projection with a bug switched on by an environment variable: large
#: withdrawals fail, and the SKIP policy sends them to the dead-letter topic.
FLAKY = """
import os

from eventsource.projection import DeadLetterPolicy, on
from examples.bank.domain import MoneyWithdrawn
from examples.bank.projections import AccountBalances, cents


class FlakyBalances(AccountBalances):
    policy = DeadLetterPolicy.SKIP
    retries = 0

    @on(MoneyWithdrawn)
    def _withdrawn(self, event: MoneyWithdrawn, ctx) -> None:
        if os.environ.get("BANK_BUG") == "1" and event.amount > 500:
            raise RuntimeError(f"bug: cannot withdraw {event.amount}")
        self._write(ctx, -cents(event.amount))
"""


def test_dlq_replay_reapplies_fixed_records_exactly_once(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    (tmp_path / "flaky_bank.py").write_text(FLAKY)
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 1200)
    expected = expected_balances(read_topic(kafka_settings, topic))
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-t", topic, "-d", db]

    broken = cli.json("replay", "flaky_bank:FlakyBalances", *where, BANK_BUG="1")
    assert broken["dead_lettered"] > 0
    assert read_balances(db, pname) != expected

    listed, human = cli.all(
        ["dlq", "list", "flaky_bank:FlakyBalances", "--name", pname, "--json"],
        ["dlq", "list", "flaky_bank:FlakyBalances", "--name", pname],
        COLUMNS="250",
    )
    letters = parsed(listed)
    assert len(letters) == broken["dead_lettered"]
    assert {r["stage"] for r in letters} == {"handler"}
    assert all(r["type"] == "bank.account.MoneyWithdrawn" for r in letters)
    assert all("bug: cannot withdraw" in r["message"] for r in letters)
    assert "RuntimeError" in human.stdout

    fixed = cli.json("dlq", "replay", "flaky_bank:FlakyBalances", *["--name", pname, "-d", db])
    assert fixed["applied"] == broken["dead_lettered"]
    assert fixed["dead_lettered_again"] == 0
    assert read_balances(db, pname) == expected

    again = cli.json("dlq", "replay", "flaky_bank:FlakyBalances", "--name", pname, "-d", db)
    assert again["applied"] == 0
    assert read_balances(db, pname) == expected


def test_dlq_discard_and_unpark_from_the_cli(
    cli: Cli, kafka_settings: KafkaSettings, pname: str, tmp_path: Path
) -> None:
    (tmp_path / "flaky_bank.py").write_text(FLAKY)
    topic = f"{pname}.events"
    seed_bank(kafka_settings, topic, 600)
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    where = ["--name", pname, "-d", db]
    broken = cli.json("replay", "flaky_bank:FlakyBalances", *where, "-t", topic, BANK_BUG="1")
    assert broken["dead_lettered"] > 1

    letters = cli.json("dlq", "list", "flaky_bank:FlakyBalances", "--name", pname)
    first = letters[0]
    gone = cli.json("dlq", "discard", "flaky_bank:FlakyBalances", *where, "--offsets", "0")
    source = first["source"]
    assert gone["discarded"] == [[source["topic"], source["partition"], source["offset"]]]
    human = cli("dlq", "unpark", "flaky_bank:FlakyBalances", *where, "--aggregate", "nobody")
    assert "0 dead letters discarded" in human.stdout

    fixed = cli.json("dlq", "replay", "flaky_bank:FlakyBalances", *where)
    assert (fixed["applied"], fixed["discarded"]) == (broken["dead_lettered"] - 1, 1)

    refused = cli("dlq", "discard", "flaky_bank:FlakyBalances", *where)
    assert refused.returncode != 0 and "needs a selection" in refused.stderr
