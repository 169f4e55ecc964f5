"""docker-compose.yml is a complete demo: it parses, and does what the docs promise.

No Docker engine answers here, so the file is checked as data: services, ports, the order
they start in, and that the appender writes the topic the projector reads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventsource.store.port import events_topic
from examples.bank.domain import Account

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOC = ROOT / "docs" / "how-to" / "local-services.md"
DEMO_DOC = ROOT / "docs" / "how-to" / "demo.md"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def published_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).split(":")[0]) for mapping in service.get("ports", [])}


def test_kafka_is_the_official_4_1_1_image_in_kraft_mode_on_9092(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]

    assert kafka["image"] == "apache/kafka:4.1.1"
    assert published_ports(kafka) == {9092}
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert "localhost:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_postgres_is_published_on_5432(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]

    assert postgres["image"] == "postgres:16"
    assert published_ports(postgres) == {5432}


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def option(command: list[str], *names: str) -> str:
    for index, word in enumerate(command):
        if word in names:
            return command[index + 1]
    raise AssertionError(f"{command} has none of {names}")


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if is_one_shot(service):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "pg_isready" in str(compose["services"]["postgres"]["healthcheck"]["test"])


def test_the_docs_promise_the_ports_the_file_publishes(compose: dict[str, Any]) -> None:
    doc = DOC.read_text()

    for service in compose["services"].values():
        for port in published_ports(service):
            assert f"localhost:{port}" in doc, f"{DOC.name} does not mention localhost:{port}"
    assert "docker compose up" in doc


def test_the_cluster_profile_runs_three_voters_with_replicated_internal_topics(
    compose: dict[str, Any],
) -> None:
    nodes = [compose["services"][f"kafka-{i}"] for i in (1, 2, 3)]

    assert all(node["profiles"] == ["cluster"] for node in nodes)
    assert [published_ports(node) for node in nodes] == [{9192}, {9194}, {9196}]
    assert [node["environment"]["KAFKA_NODE_ID"] for node in nodes] == ["1", "2", "3"]
    for node in nodes:
        env = node["environment"]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@kafka-") == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["CLUSTER_ID"] == nodes[0]["environment"]["CLUSTER_ID"]
    assert "profiles" not in compose["services"]["kafka"]


def test_a_one_shot_appender_runs_the_demo_in_append_only_mode(compose: dict[str, Any]) -> None:
    appender = compose["services"]["appender"]

    assert is_one_shot(appender)
    assert appender["entrypoint"] == ["python", "-m", "examples.bank.demo"]
    assert "--append-only" in appender["command"]
    assert appender["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert appender["environment"]["EVENTSOURCE_BOOTSTRAP_SERVERS"] == "kafka:19092"
    # The flags it passes are the demo's own (the container runs the same module).
    demo_help = subprocess.run(
        [sys.executable, "-m", "examples.bank.demo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (word for word in appender["command"] if word.startswith("--")):
        assert flag in demo_help


def test_the_projector_reads_the_topic_the_appender_writes(compose: dict[str, Any]) -> None:
    appender = compose["services"]["appender"]["command"]
    projector = compose["services"]["projector"]["command"]

    written = events_topic(Account.aggregate_type, option(appender, "--topic-prefix"))
    assert option(projector, "-t", "--topic") == written == "compose.bank.account.events"
    assert projector[:2] == ["run", "examples.bank.projections:AccountBalances"]


def test_the_projector_starts_once_the_appender_succeeded(compose: dict[str, Any]) -> None:
    depends = compose["services"]["projector"]["depends_on"]

    assert depends["appender"] == {"condition": "service_completed_successfully"}
    assert depends["kafka"] == depends["postgres"] == {"condition": "service_healthy"}


def test_the_projector_publishes_its_probes_where_the_demo_page_sends_users(
    compose: dict[str, Any],
) -> None:
    projector = compose["services"]["projector"]
    doc = DEMO_DOC.read_text()

    assert published_ports(projector) == {9464}
    assert "9464/healthz" in str(projector["healthcheck"]["test"])
    for path in ("readyz", "metrics", "healthz"):
        assert f"localhost:9464/{path}" in doc
    assert "docker compose up --build" in doc


def test_both_demo_services_run_the_same_image(compose: dict[str, Any]) -> None:
    appender, projector = compose["services"]["appender"], compose["services"]["projector"]

    assert appender["image"] == projector["image"]
    assert appender["build"] == projector["build"]
    assert (ROOT / appender["build"]["dockerfile"]).is_file()
