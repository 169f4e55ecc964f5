"""Whether a broker answers at the bootstrap address, and the words to say when none does.

librdkafka reconnects forever and reports an unreachable broker as ``Local: Broker
transport failure``, an empty timeout or a raw ``KafkaError{...}``. Everything that talks
to Kafka on a user's behalf says it the same way instead: which address was tried, for how
long, and how to point elsewhere (:func:`unreachable_message`), as a
:class:`~eventsource.errors.BrokerUnreachableError`.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from eventsource.errors import AuthenticationError, BrokerUnreachableError
from eventsource.kafka.access import (
    authentication_error,
    is_login_failure,
    login_failure,
    secured,
)
from eventsource.kafka.config import KafkaSettings

__all__ = [
    "check_reachable",
    "client_error",
    "is_unreachable",
    "lost_brokers",
    "unreachable_error",
    "unreachable_message",
]

_SLICE_S = 0.5

#: librdkafka error codes that mean "no broker answered", not "the broker said no".
_UNREACHABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._MSG_TIMED_OUT,
    }
)


def unreachable_message(bootstrap_servers: str, seconds: float | None) -> str:
    """One line: the address tried, for how long, and how to point elsewhere."""
    if seconds is None:  # a running client lost its brokers
        return (
            f"no Kafka broker answers at {bootstrap_servers} (retrying): start the broker, "
            "or point elsewhere with -b HOST:PORT or EVENTSOURCE_BOOTSTRAP_SERVERS"
        )
    return (
        f"no Kafka broker answered at {bootstrap_servers} within {seconds:g}s: start the "
        "broker, or point elsewhere with -b HOST:PORT or EVENTSOURCE_BOOTSTRAP_SERVERS "
        "(wait longer with --connect-timeout or EVENTSOURCE_CONNECT_TIMEOUT_S)"
    )


def lost_brokers(error: KafkaError) -> bool:
    """Whether an error a running client reported means it cannot reach any broker."""
    return bool(error.code() in _UNREACHABLE)


def client_error(settings: KafkaSettings, error: KafkaError) -> Exception:
    """A non-fatal error a consumer or producer reported, in the project's words."""
    if is_login_failure(error):
        return authentication_error(settings, error)
    if error.code() in _UNREACHABLE:
        return BrokerUnreachableError(unreachable_message(settings.bootstrap_servers, None))
    return KafkaException(error)


def unreachable_error(
    settings: KafkaSettings, seconds: float
) -> BrokerUnreachableError | AuthenticationError:
    """Why nothing answered within ``seconds``: a refused login (told by a short second
    attempt when clients log in or use TLS), else an unreachable broker."""
    if secured(settings):
        refused = login_failure(settings)
        if refused is not None:
            return refused
    return BrokerUnreachableError(unreachable_message(settings.bootstrap_servers, seconds))


def is_unreachable(exc: BaseException) -> bool:
    """Whether a confluent-kafka error means no broker answered (transport, timeout)."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and error.code() in _UNREACHABLE


def check_reachable(settings: KafkaSettings, timeout: float | None = None) -> None:
    """Raise :class:`BrokerUnreachableError` unless a broker answers within ``timeout``
    seconds (default: the settings' ``connect_timeout_s``)."""
    seconds = settings.connect_timeout_s if timeout is None else timeout
    refused: list[KafkaError] = []
    admin = AdminClient(settings.admin_config(error_cb=refused.append))
    deadline = time.monotonic() + seconds
    while True:
        # Short slices: Ctrl-C is only seen between calls into librdkafka.
        left = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.01, min(_SLICE_S, left)))
            return
        except KafkaException as exc:
            if not is_unreachable(exc):
                raise
            admin.poll(0)  # a refused login is told through error_cb only
            login = [e for e in refused if is_login_failure(e)]
            if login:
                raise authentication_error(settings, login[0]) from exc
            if left <= _SLICE_S:
                raise unreachable_error(settings, seconds) from exc
