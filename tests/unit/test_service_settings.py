"""Service settings, librdkafka passthrough, secret redaction and the import-path loader."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.service.loader import load_object, load_typed
from eventsource.service.logs import Redactor, configure_logging, get_logger, reset_logging
from eventsource.service.settings import (
    ServiceSettings,
    kafka_settings,
    parse_properties,
    redact_url,
    secret_values,
)

PASSWORD = "s3cr3t-Pa55word"


def test_settings_come_from_eventsource_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTSOURCE_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("EVENTSOURCE_HTTP_PORT", "8081")
    monkeypatch.setenv("EVENTSOURCE_BATCH_SIZE", "100")
    monkeypatch.setenv("EVENTSOURCE_LOG_LEVEL", "debug")
    settings = ServiceSettings()
    assert (settings.database_url, settings.http_port, settings.batch_size) == (
        "sqlite:///x.db",
        8081,
        100,
    )
    assert settings.log_level == "DEBUG"


def test_unknown_log_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        ServiceSettings(log_level="chatty")


def test_database_password_is_redacted_in_repr_and_str() -> None:
    settings = ServiceSettings(database_url=f"postgresql+psycopg://app:{PASSWORD}@db:5432/rm")
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert "postgresql+psycopg://app:***@db:5432/rm" in repr(settings)


def test_redact_url_leaves_urls_without_password_alone() -> None:
    assert redact_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert redact_url("postgresql://app@db/rm") == "postgresql://app@db/rm"
    assert redact_url("see postgresql://a:b%40c@h/d now") == "see postgresql://a:***@h/d now"


def test_x_properties_parse_into_librdkafka_config() -> None:
    assert parse_properties(["security.protocol=SASL_SSL", "sasl.password=a=b"]) == {
        "security.protocol": "SASL_SSL",
        "sasl.password": "a=b",
    }


def test_malformed_x_property_is_a_configuration_error_without_the_secret() -> None:
    with pytest.raises(ConfigurationError, match="key=value") as caught:
        parse_properties(["=nokey"])
    assert "nokey" in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        parse_properties([f"sasl.password{PASSWORD}"])
    assert "key=value" in str(caught.value)


def test_flags_override_environment_and_merge_kafka_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_EXTRA", json.dumps({"client.id": "env", "acks": "1"}))
    settings = kafka_settings("flag:9092", {"client.id": "flag"})
    assert settings.bootstrap_servers == "flag:9092"
    assert settings.kafka_extra == {"client.id": "flag", "acks": "1"}
    assert kafka_settings().bootstrap_servers == "env:9092"


def test_secret_values_collects_sasl_and_database_passwords() -> None:
    kafka = KafkaSettings(kafka_extra={"sasl.password": PASSWORD, "client.id": "visible"})
    service = ServiceSettings(database_url="postgresql://u:dbpass%21@h/d")
    assert secret_values(kafka, service) == {PASSWORD, "dbpass%21", "dbpass!"}


def test_redactor_scrubs_secret_keys_urls_and_known_values() -> None:
    redactor = Redactor([PASSWORD])
    event = {
        "event": f"connecting with {PASSWORD}",
        "sasl.password": "other",
        "config": {"sasl.password": PASSWORD, "bootstrap.servers": "b:9092"},
        "url": f"postgresql://u:{PASSWORD}@h/d",
        "error": ValueError(f"auth failed for {PASSWORD}"),
    }
    cleaned = redactor(None, "info", event)
    assert PASSWORD not in json.dumps(cleaned, default=str)
    assert cleaned["sasl.password"] == "***"
    assert cleaned["config"]["bootstrap.servers"] == "b:9092"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    reset_logging()


@pytest.mark.usefixtures("restore_logging")
def test_configured_logging_writes_json_lines_without_secrets() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", secrets=[PASSWORD], stream=stream)
    get_logger("test", projection="balances").info("connecting", password=PASSWORD, n=3)
    try:
        raise RuntimeError(f"login failed with {PASSWORD}")
    except RuntimeError:
        logging.getLogger("plain.stdlib").exception("stdlib line mentioning %s", PASSWORD)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["projection"] == "balances"
    assert lines[0]["n"] == 3
    assert lines[0]["level"] == "info"
    assert PASSWORD not in stream.getvalue()
    assert "login failed with ***" in stream.getvalue()


def test_load_object_finds_a_module_attribute() -> None:
    assert load_object("examples.bank.domain:Account").__name__ == "Account"
    assert load_object("eventsource.errors:ConfigurationError.__name__") == "ConfigurationError"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("examples.bank.domain", "not of the form"),
        ("no_such_module_xyz:thing", "cannot import module 'no_such_module_xyz'"),
        ("examples.bank.domain:Nope", "has no attribute 'Nope'"),
        ("a b:c", "not of the form"),
    ],
)
def test_bad_import_paths_raise_configuration_errors_naming_the_path(
    path: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_object(path)
    assert path.split(":")[0] in str(caught.value)


def test_load_typed_rejects_objects_of_the_wrong_kind() -> None:
    from eventsource.domain import Aggregate

    assert load_typed("examples.bank.domain:Account", Aggregate, "an aggregate")
    with pytest.raises(ConfigurationError, match="which is not an aggregate"):
        load_typed("examples.bank.domain:MoneyDeposited", Aggregate, "an aggregate")
