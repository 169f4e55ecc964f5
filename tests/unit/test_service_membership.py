"""A crashed projector gets its partitions back fast: static membership from a stable
identity where there is one, a session timeout otherwise that still outlasts a group
coordinator's failover, with heartbeats at most a second apart (see
docs/how-to/production.md)."""

from __future__ import annotations

import pytest

from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.service.runtime import membership
from eventsource.service.settings import ServiceSettings


@pytest.fixture(autouse=True)
def _outside_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBERNETES_SERVICE_HOST", "POD_NAME", "EVENTSOURCE_INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)


def test_without_an_identity_the_session_outlasts_a_coordinator_failover() -> None:
    # 20 s: a 10 s session lost every partition when the group's coordinator was killed
    # on a three-broker cluster (tests/reliability/test_cluster_projectors.py).
    assert membership(KafkaSettings(), ServiceSettings()) == {
        "session.timeout.ms": 20_000,
        "heartbeat.interval.ms": 1_000,
    }


def test_the_heartbeat_follows_a_configured_session_timeout() -> None:
    short = membership(KafkaSettings(), ServiceSettings(session_timeout_ms=3_000))
    assert short == {"session.timeout.ms": 3_000, "heartbeat.interval.ms": 500}


def test_the_heartbeat_follows_a_session_timeout_given_with_x() -> None:
    kafka = KafkaSettings(kafka_extra={"session.timeout.ms": "4800"})
    assert membership(kafka, ServiceSettings()) == {"heartbeat.interval.ms": 800}


def test_a_session_timeout_given_with_x_that_is_no_number_is_a_configuration_error() -> None:
    kafka = KafkaSettings(kafka_extra={"session.timeout.ms": "20s"})
    with pytest.raises(ConfigurationError, match=r"-X session.timeout.ms='20s' .* 20000"):
        membership(kafka, ServiceSettings())


def test_an_instance_id_makes_the_member_static() -> None:
    got = membership(KafkaSettings(), ServiceSettings(instance_id="projector-0"))
    assert got["group.instance.id"] == "projector-0"


def test_in_kubernetes_the_pod_name_is_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("HOSTNAME", "balances-7c9f-x2x8q")
    assert membership(KafkaSettings(), ServiceSettings())["group.instance.id"] == (
        "balances-7c9f-x2x8q"
    )


def test_outside_kubernetes_the_host_name_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "laptop")  # two replicas on one host would fence each other
    assert "group.instance.id" not in membership(KafkaSettings(), ServiceSettings())


def test_librdkafka_properties_given_with_x_win() -> None:
    kafka = KafkaSettings(
        kafka_extra={
            "session.timeout.ms": "45000",
            "heartbeat.interval.ms": "3000",
            "group.instance.id": "mine",
        }
    )
    assert membership(kafka, ServiceSettings(instance_id="projector-0")) == {}
