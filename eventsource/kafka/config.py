"""Kafka settings: ``EVENTSOURCE_*`` variables -> librdkafka configuration dictionaries.

Any librdkafka property passes through ``extra`` (``EVENTSOURCE_KAFKA_EXTRA`` as a JSON
object, or ``-X key=value`` on the CLI), SASL and SSL included. Values of secret-looking
properties never appear in ``repr()``, logs or error messages: use :func:`redact`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventsource.kafka.client_logs import admin_log_config, with_client_log

_SECRET_KEY = re.compile(
    r"(password|secret|jaas|token|credentials|private|key\.pem|keystore)", re.I
)
REDACTED = "***"


def is_secret_key(key: str) -> bool:
    """Whether a configuration key holds a secret that must never be printed."""
    return bool(_SECRET_KEY.search(key))


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with secret values replaced by ``***``."""
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in config.items()}


FAILOVER_TUNING: Mapping[str, Any] = {
    # A partition whose leader died is led by another broker as soon as the controller has
    # fenced the dead one; librdkafka learns that only from fresh metadata. Refreshing every
    # second moves stalled records to the new leader within a second of the failover
    # (librdkafka's default is five minutes).
    "topic.metadata.refresh.interval.ms": 1000,
    # A restarted broker is seen again within a second (default: backoff up to 10 s).
    "reconnect.backoff.max.ms": 1000,
}
"""librdkafka settings that bound how long a client waits after a broker failover."""

FETCH_WAIT_MAX_MS = 100
"""How long a consumer's idle fetch waits at the broker (librdkafka default 500 ms)."""


class KafkaSettings(BaseSettings):
    """Where the broker is and how to talk to it.

    Environment: ``EVENTSOURCE_BOOTSTRAP_SERVERS``, ``EVENTSOURCE_APPLICATION_ID``,
    ``EVENTSOURCE_CONNECT_TIMEOUT_S``; security: ``EVENTSOURCE_SECURITY_PROTOCOL``,
    ``EVENTSOURCE_SASL_MECHANISM``, ``EVENTSOURCE_SASL_USERNAME``,
    ``EVENTSOURCE_SASL_PASSWORD``, ``EVENTSOURCE_SSL_CA_LOCATION``; any other librdkafka
    property through ``EVENTSOURCE_KAFKA_EXTRA='{"ssl.certificate.location": ...}'``.
    """

    model_config = SettingsConfigDict(env_prefix="EVENTSOURCE_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    application_id: str = Field(
        default="eventsource",
        description="Prefix of transactional ids and consumer groups; one per application.",
    )
    kafka_extra: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties passed through unchanged (SASL/SSL included).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        default=None,
        description="librdkafka security.protocol; SASL_SSL for SASL/SCRAM over TLS.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(default=None, description="librdkafka sasl.mechanism.")
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password; never printed, logged or put in errors."
    )
    ssl_ca_location: str | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates "
        "(default: the system's trust store).",
    )
    connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long a command waits for a broker to answer before it fails "
        "(`--connect-timeout`).",
    )
    delivery_timeout_ms: int = 30_000
    allow_lossy_events_topics: bool = Field(
        default=False,
        description="Let stores start on events topics that can delete or compact records "
        "(finite retention.ms / retention.bytes, cleanup.policy with compact). Versions are "
        "rebuilt from the topic, so only for data you accept to lose.",
    )
    transaction_timeout_ms: int = 60_000
    catchup_stall_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A catch-up, snapshot restore or tail re-read that receives nothing for "
        "this long fails (retriable); never less than the delivery timeout.",
    )
    admin_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Bound of one metadata request of the write side: the writers group's "
        "description, the append server's watermark queries.",
    )
    close_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long closing waits for queued work: a writer's queued appends, an "
        "append server's in-flight requests and replies, a producer's flush.",
    )
    release_timeout_s: float = Field(
        default=1.0,
        ge=0,
        description="How long a rebalance waits for a writer that is still taking over a "
        "partition it loses (it ends on its own later; a serving one drains).",
    )

    def __repr__(self) -> str:
        return (
            f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, "
            f"application_id={self.application_id!r}, "
            f"security_protocol={self.security_protocol!r}, "
            f"sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r}, "
            f"kafka_extra={redact(self.kafka_extra)!r})"
        )

    __str__ = __repr__

    def security_config(self) -> dict[str, Any]:
        """The librdkafka security properties set through the dedicated settings."""
        named = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": (
                self.sasl_password.get_secret_value() if self.sasl_password is not None else None
            ),
            "ssl.ca.location": self.ssl_ca_location,
        }
        return {k: v for k, v in named.items() if v is not None}

    @property
    def login(self) -> str:
        """How clients log in, without secrets: ``SASL_SSL SCRAM-SHA-512 as 'app'``."""
        config = {**self.kafka_extra, **self.security_config()}
        protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
        if not protocol.startswith("SASL"):
            return protocol
        mechanism = config.get("sasl.mechanism", "GSSAPI")
        user = config.get("sasl.username")
        return f"{protocol} {mechanism}" + (f" as {user!r}" if user else "")

    def common(self) -> dict[str, Any]:
        """Properties every client gets; its log lines go through :mod:`.client_logs`.

        :data:`FAILOVER_TUNING` first, so ``kafka_extra`` can override it; the security
        settings (``security_protocol``, ``sasl_*``, ``ssl_ca_location``) last: they win
        over the same properties in ``kafka_extra``.
        """
        return with_client_log(
            {
                "bootstrap.servers": self.bootstrap_servers,
                **FAILOVER_TUNING,
                **self.kafka_extra,
                **self.security_config(),
            }
        )

    def producer_config(self, **overrides: Any) -> dict[str, Any]:
        """Idempotent, ``acks=all`` producer with a bounded delivery timeout."""
        return {
            **self.common(),
            "enable.idempotence": True,
            "acks": "all",
            "delivery.timeout.ms": self.delivery_timeout_ms,
            "linger.ms": 5,
            **overrides,
        }

    def transactional_producer_config(
        self, transactional_id: str, **overrides: Any
    ) -> dict[str, Any]:
        """A producer that fences older producers with the same ``transactional.id``."""
        return self.producer_config(
            **{
                "transactional.id": transactional_id,
                "transaction.timeout.ms": self.transaction_timeout_ms,
                **overrides,
            }
        )

    def consumer_config(self, group_id: str, **overrides: Any) -> dict[str, Any]:
        """``read_committed`` consumer without auto commit: positions are ours to keep."""
        return {
            **self.common(),
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # An idle fetch waits this long at the broker, and the broker answers a
            # connection's requests in order: an offsets or metadata request sent behind it
            # (end offsets, ``run_until_caught_up``, ``status``) waited up to the 500 ms
            # default. 100 ms costs a few small fetches per second when idle.
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            **overrides,
        }

    def admin_config(self, **overrides: Any) -> dict[str, Any]:
        """AdminClient properties (it is never polled: it logs critical lines only)."""
        return admin_log_config({**self.common(), **overrides})
