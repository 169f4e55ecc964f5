"""Service and CLI settings: ``EVENTSOURCE_*`` variables, overridden by command-line flags.

Kafka connection settings live in :class:`eventsource.kafka.config.KafkaSettings`; this
module adds what a running projector needs (database, HTTP port, logging, batching) and the
helpers that keep secrets out of output: :func:`redact_url` and :func:`secret_values`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import unquote

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventsource.errors import ConfigurationError
from eventsource.kafka.config import REDACTED, KafkaSettings, is_secret_key
from eventsource.kafka.group_session import FAILOVER_SESSION_TIMEOUT_MS
from eventsource.projection.store import read_model_url

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@")

LogFormat = Literal["json", "console"]


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info part replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", url)


def url_password(url: str) -> str | None:
    """The password inside a database URL, if any (so it can be scrubbed from output)."""
    match = _URL_PASSWORD.search(url)
    return match.group("pw") if match else None


class ServiceSettings(BaseSettings):
    """What a projector process needs besides Kafka.

    Environment: ``EVENTSOURCE_DATABASE_URL``, ``EVENTSOURCE_HTTP_PORT``,
    ``EVENTSOURCE_LOG_LEVEL``, ``EVENTSOURCE_LOG_FORMAT``, ``EVENTSOURCE_BATCH_SIZE``,
    ``EVENTSOURCE_DRAIN_TIMEOUT_S``, ``EVENTSOURCE_INSTANCE_ID``,
    ``EVENTSOURCE_SESSION_TIMEOUT_MS``.
    """

    model_config = SettingsConfigDict(env_prefix="EVENTSOURCE_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///.eventsource/readmodels.db",
        description="SQLAlchemy URL of the read-model database (checkpoints live there too).",
    )
    http_host: str = "0.0.0.0"  # probes come from outside a pod
    http_port: int | None = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of /healthz, /readyz and /metrics; 0 picks a free port; None: off.",
    )
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    drain_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="On SIGTERM/SIGINT: how long the in-flight batches may take to commit.",
    )
    instance_id: str | None = Field(
        default=None,
        description="Stable identity of this replica (group.instance.id: static membership, "
        "so a restarted replica takes its partitions back at once); default: the pod name "
        "when running in Kubernetes, else none.",
    )
    session_timeout_ms: int = Field(
        default=FAILOVER_SESSION_TIMEOUT_MS,
        ge=1_000,
        description="Consumer session timeout: how long a crashed replica without a stable "
        "identity keeps its partitions; keep it above a group coordinator's failover (about "
        "15 s at most on a three-broker cluster), or that failover revokes every partition.",
    )

    def member_identity(self) -> str | None:
        """``instance_id``, else the pod name in Kubernetes (HOSTNAME there is the pod's
        name, unique among live pods and kept across container restarts)."""
        if self.instance_id:
            return self.instance_id
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or None
        return None

    @field_validator("database_url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        # A malformed or unsupported URL is a configuration error before anything connects
        # (ConfigurationError passes through pydantic unchanged).
        read_model_url(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}: use DEBUG, INFO, WARNING or ERROR")
        return level

    def __repr__(self) -> str:
        return (
            f"ServiceSettings(database_url={redact_url(self.database_url)!r}, "
            f"http_port={self.http_port!r}, log_level={self.log_level!r}, "
            f"batch_size={self.batch_size!r}, drain_timeout_s={self.drain_timeout_s!r})"
        )

    __str__ = __repr__


def parse_properties(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` (the CLI's ``-X`` options) to a librdkafka property dictionary."""
    properties: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = f"{key}=***" if is_secret_key(key) else pair
            raise ConfigurationError(
                f"librdkafka property {shown!r} is not of the form key=value "
                "(e.g. -X security.protocol=SASL_SSL)"
            )
        properties[key] = value
    return properties


def kafka_settings(
    bootstrap_servers: str | None = None, properties: Mapping[str, str] | None = None
) -> KafkaSettings:
    """KafkaSettings from the environment, with flags taking precedence."""
    base = KafkaSettings()
    updates: dict[str, object] = {}
    if bootstrap_servers:
        updates["bootstrap_servers"] = bootstrap_servers
    if properties:
        updates["kafka_extra"] = {**base.kafka_extra, **properties}
    return base.model_copy(update=updates) if updates else base


def secret_values(kafka: KafkaSettings | None, service: ServiceSettings | None) -> set[str]:
    """Every secret value in the settings, so output can be scrubbed of them."""
    secrets: set[str] = set()
    if kafka is not None:
        # Only string values: a caller may pass objects (a `logger`) through kafka_extra.
        texts = {k: v for k, v in kafka.kafka_extra.items() if isinstance(v, str)}
        secrets.update(v for k, v in texts.items() if is_secret_key(k) and v)
        secrets.update(pw for pw in (url_password(v) for v in texts.values()) if pw)
        if kafka.sasl_password is not None:
            secrets.add(kafka.sasl_password.get_secret_value())
    if service is not None:
        password = url_password(service.database_url)
        if password:
            secrets.update({password, unquote(password)})
    # Very short values would blank out unrelated text; they are still redacted by key.
    return {s for s in secrets if len(s) >= 3}
