"""Security settings reach every client's configuration and never its printed forms; the
local broker's TLS material and listener lines (no JVM needed)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from eventsource.errors import AuthorizationError
from eventsource.kafka.access import authentication_error, denied
from eventsource.kafka.broker_files import server_properties
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.security import LocalSecurity
from eventsource.service.settings import secret_values

SECRET = "s3cret-Pw-91ab"
ENV = {
    "EVENTSOURCE_SECURITY_PROTOCOL": "SASL_SSL",
    "EVENTSOURCE_SASL_MECHANISM": "SCRAM-SHA-512",
    "EVENTSOURCE_SASL_USERNAME": "orders",
    "EVENTSOURCE_SASL_PASSWORD": SECRET,
    "EVENTSOURCE_SSL_CA_LOCATION": "/etc/kafka/ca.pem",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> KafkaSettings:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return KafkaSettings(kafka_extra={"sasl.username": "overridden"})


def test_security_settings_from_the_environment_reach_every_client(
    settings: KafkaSettings,
) -> None:
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "orders",  # the named setting wins over kafka_extra
        "sasl.password": SECRET,
        "ssl.ca.location": "/etc/kafka/ca.pem",
    }
    configs = [
        settings.producer_config(),
        settings.transactional_producer_config("t"),
        settings.consumer_config("g"),
        settings.admin_config(),
    ]
    for config in configs:
        assert expected.items() <= config.items()
    assert settings.login == "SASL_SSL SCRAM-SHA-512 as 'orders'"


def test_the_password_is_in_no_printed_form_and_is_scrubbed_from_output(
    settings: KafkaSettings,
) -> None:
    for text in (repr(settings), str(settings), settings.model_dump_json(), settings.login):
        assert SECRET not in text
    assert SECRET in secret_values(settings, None)


def test_a_refused_login_is_one_line_naming_broker_mechanism_and_user(
    settings: KafkaSettings,
) -> None:
    error = KafkaError(
        KafkaError._AUTHENTICATION,
        "sasl_ssl://10.0.0.7:9094/bootstrap: SASL authentication error: Authentication failed "
        f"due to invalid credentials {SECRET} (after 307ms in state AUTH_REQ)",
    )
    message = str(authentication_error(settings, error))
    assert message.startswith("the Kafka broker 10.0.0.7:9094 refused the login")
    assert "SCRAM-SHA-512" in message and "'orders'" in message and "AUTH_REQ" not in message
    assert SECRET not in message and "\n" not in message


def test_a_missing_acl_names_resource_and_operation(settings: KafkaSettings) -> None:
    error = denied(settings, "topic", "bank.account.events", "WRITE", "cannot append")
    assert isinstance(error, AuthorizationError) and error.retriable is False
    assert (error.resource_type, error.resource, error.operation) == (
        "topic",
        "bank.account.events",
        "WRITE",
    )
    assert "User:orders --operation WRITE --topic bank.account.events" in str(error)


def test_the_local_broker_gets_a_ca_a_keystore_and_sasl_ssl_listeners(tmp_path: Path) -> None:
    security = LocalSecurity(tmp_path / "security")
    security.ensure()
    security.ensure()  # idempotent: the same CA and passwords on every start
    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(security.ca_location),
            str(tmp_path / "security" / "broker.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    for secret_file in ("credentials.json", "broker.p12", "ca.key", "broker.key"):
        mode = (tmp_path / "security" / secret_file).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    text = server_properties(
        19092, 19093, tmp_path, listener_lines=security.server_properties(19092, 19093)
    )
    assert "listeners=SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "PLAINTEXT://127.0.0.1:19092" not in text
    assert "StandardAuthorizer" in text and "allow.everyone.if.no.acl.found=false" in text
    assert security.format_args()[0] == "--add-scram"
    assert security.client_config()["sasl.password"] == security.admin_password
