"""Every Kafka resource name comes from ``eventsource.kafka.names``; the framework's tables
share one MetaData."""

from __future__ import annotations

import ast
import pathlib
import re

import eventsource
from eventsource.kafka import names
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import Projection
from eventsource.projection.deadletter import dead_letter_hook, dlq_topic
from eventsource.projection.tables import FRAMEWORK_METADATA
from eventsource.projection.types import DeadLetterPolicy
from examples.bank.domain import Account

PACKAGE = pathlib.Path(eventsource.__file__).parent


class Balances(Projection):
    name = "balances"
    aggregates = (Account,)
    policy = DeadLetterPolicy.SKIP


def test_names_follow_the_documented_patterns() -> None:
    assert names.events_topic("bank.account", "dev.") == "dev.bank.account.events"
    assert names.snapshots_topic("bank.account", "dev.") == "dev.bank.account.snapshots"
    assert names.dlq_topic("balances", "dev.") == "dev.balances.dlq"
    assert names.projection_group("app", "balances", 2) == "app.projection.balances.v2"
    assert names.writer_transactional_id("app", "t.events", 3) == "app.t.events.3"
    assert names.writers_group("app") == "app.writers"
    assert names.append_server_instance_id("app", "m1") == "app.append-server.m1"
    unique = names.reader_group("app", "scan", unique=True)
    assert re.fullmatch(r"app\.scan\.[0-9a-f]{32}", unique)


def test_a_projection_reads_and_dead_letters_under_its_topic_prefix() -> None:
    p = Balances(topic_prefix="dev.")
    assert p.topics == ("dev.bank.account.events",)
    assert Balances().topics == ("bank.account.events",)
    assert dlq_topic(p.name, p.topic_prefix) == "dev.balances.dlq"
    hook = dead_letter_hook(p, KafkaSettings())
    assert hook.projection == "balances"  # type: ignore[attr-defined]


def test_no_module_but_names_formats_a_topic_group_or_transactional_id() -> None:
    pattern = re.compile(
        r"\.(events|snapshots|dlq|writers|append-requests|append-replies|append-server)$"
        r"|^\.projection\.|application_id\}\."
    )
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = ast.unparse(node)
                literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if pattern.search(literal) or "application_id}." in text:
                    offenders.append(f"{path.relative_to(PACKAGE)}: {text}")
    assert offenders == []


def test_the_framework_tables_share_one_metadata() -> None:
    assert sorted(FRAMEWORK_METADATA.tables) == [
        "eventsource_checkpoints",
        "eventsource_dlq_applied",
        "eventsource_dlq_checkpoints",
        "eventsource_dlq_discarded",
        "eventsource_dlq_diverted",
        "eventsource_parked",
        "eventsource_projections",
    ]
