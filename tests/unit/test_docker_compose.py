"""docker-compose.yml parses and publishes what docs/how-to/local-services.md promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOC = ROOT / "docs" / "how-to" / "local-services.md"


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


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
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
