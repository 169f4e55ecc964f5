"""Refused logins and missing ACLs, in one line each: which broker, mechanism, resource, operation.

librdkafka reports a wrong SASL password only through its error callback and log, and the
call that was waiting times out as if no broker answered (``Local: Broker transport
failure``). :func:`login_failure` asks again with a short-lived client that listens to that
callback, so a refused login is told as an :class:`~eventsource.errors.AuthenticationError`
within a second of the connect timeout instead of as an unreachable broker. Brokers that
refuse an operation answer with an ``*_AUTHORIZATION_FAILED`` code;
:func:`denied` turns it into an :class:`~eventsource.errors.AuthorizationError` naming what
lacks which ACL. No message ever holds a password: they are built from the settings' user
name and mechanism and the broker's address, not from configuration dictionaries.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from eventsource.errors import AuthenticationError, AuthorizationError
from eventsource.kafka.unchained import unchained

if TYPE_CHECKING:
    from eventsource.kafka.config import KafkaSettings

__all__ = [
    "AUTHORIZATION_CODES",
    "authentication_error",
    "check_consumer_access",
    "check_topic_operations",
    "denied",
    "is_login_failure",
    "login_failure",
    "login_outcome",
    "secured",
]

_LOGIN_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
)
AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)
"""Broker answers that mean "this principal lacks an ACL"."""

_BROKER = re.compile(r"^\s*(?:[a-z_]+://)?(?P<addr>[^/\s]+)(?:/[^:\s]*)?:\s*")
_TIMING = re.compile(r"\s*\(after \d+ms in state [A-Z_]+\)\s*$")
_PROBE_S = 2.0


def is_login_failure(error: KafkaError) -> bool:
    """Whether a client error means the login or the TLS handshake was refused."""
    return error.code() in _LOGIN_CODES


def authentication_error(settings: KafkaSettings, error: KafkaError) -> AuthenticationError:
    """One line: which broker refused, with which mechanism and user, and what to check."""
    text = error.str()
    match = _BROKER.match(text)
    broker = match.group("addr") if match else settings.bootstrap_servers
    reason = _TIMING.sub("", text[match.end() :] if match else text)
    password = settings.security_config().get("sasl.password") or settings.kafka_extra.get(
        "sasl.password"
    )
    if password:
        reason = reason.replace(str(password), "***")
    if error.code() == KafkaError._SSL:
        return AuthenticationError(
            f"the TLS handshake with the Kafka broker {broker} failed ({settings.login}): "
            f"{reason}; check EVENTSOURCE_SSL_CA_LOCATION (the CA that signed the brokers' "
            "certificates) and the broker address"
        )
    return AuthenticationError(
        f"the Kafka broker {broker} refused the login ({settings.login}): {reason}; check "
        "EVENTSOURCE_SASL_USERNAME, EVENTSOURCE_SASL_PASSWORD and EVENTSOURCE_SASL_MECHANISM"
    )


def login_failure(settings: KafkaSettings, timeout: float = _PROBE_S) -> AuthenticationError | None:
    """The refused login or TLS handshake of a client with ``settings``, if that is what
    happens within ``timeout`` seconds; None when the login works or nothing answers."""
    outcome = login_outcome(settings, timeout)
    return outcome if isinstance(outcome, AuthenticationError) else None


def login_outcome(settings: KafkaSettings, timeout: float) -> AuthenticationError | bool:
    """What happens within ``timeout`` seconds when a client with ``settings`` connects:
    its refused login, True (a broker answered), or False (none did).

    Callers ask from an ``except`` block, so the probe runs through
    :func:`~eventsource.kafka.unchained.unchained`: its failed listings keep nothing of
    the caller's exception alive (``eventsource run`` once died of SIGSEGV after a refused
    login, the client of the failed topic listing still logging in while the interpreter
    shut down).
    """
    return unchained(_login_outcome, settings, timeout)


def _login_outcome(settings: KafkaSettings, timeout: float) -> AuthenticationError | bool:
    seen: list[KafkaError] = []

    def record(error: KafkaError) -> None:
        if is_login_failure(error):
            seen.append(error)

    admin = AdminClient(settings.admin_config(error_cb=record))
    deadline = time.monotonic() + timeout
    while not seen and time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=0.3)
            return True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and is_login_failure(error):
                seen.append(error)
        admin.poll(0.1)  # serves error_cb
    return authentication_error(settings, seen[0]) if seen else False


def secured(settings: KafkaSettings) -> bool:
    """Whether clients log in or use TLS (only then can a login be refused)."""
    protocol = {**settings.kafka_extra, **settings.security_config()}.get("security.protocol")
    return str(protocol or "PLAINTEXT").upper() != "PLAINTEXT"


def denied(
    settings: KafkaSettings | None,
    resource_type: str,
    resource: str,
    operation: str,
    what: str,
) -> AuthorizationError:
    """One line: who lacks which ACL on what, and how to grant it."""
    user = settings.sasl_username if settings is not None else None
    who = f"user {user!r}" if user else "this client's principal"
    where = f" on {settings.bootstrap_servers}" if settings is not None else ""
    return AuthorizationError(
        f"{what}: {who} lacks {operation} permission on {resource_type} {resource!r}{where} "
        f"(an ACL is missing; nothing was changed): grant it, e.g. kafka-acls --add "
        f"--allow-principal User:{user or '<name>'} --operation {operation} "
        f"--{resource_type.replace(' ', '-')} {resource}",
        resource_type=resource_type,
        resource=resource,
        operation=operation,
    )


def check_topic_operations(
    settings: KafkaSettings, topic: str, operations: tuple[str, ...], what: str, timeout: float
) -> None:
    """Raise :class:`AuthorizationError` unless the principal may do ``operations`` on
    ``topic`` (the broker's authorized operations, asked without trying any of them).

    Without an authorizer every operation is allowed; a broker that does not tell (older
    than Kafka 2.3) is not second-guessed.
    """
    if not secured(settings):
        return
    admin = AdminClient(settings.admin_config())
    future = admin.describe_topics(
        TopicCollection([topic]), include_authorized_operations=True, request_timeout=timeout
    )[topic]
    try:
        description: Any = future.result(timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() in AUTHORIZATION_CODES:
            # READ and WRITE imply DESCRIBE: granting the first one needed fixes both.
            needed = operations[0] if operations else "DESCRIBE"
            raise denied(settings, "topic", topic, needed, what) from exc
        return  # not ours to report here: the caller's own requests will say it
    allowed = description.authorized_operations
    if allowed is None:
        return
    names = {getattr(op, "name", str(op)) for op in allowed}
    for operation in operations:
        if operation not in names and "ALL" not in names:
            raise denied(settings, "topic", topic, operation, what)


def check_consumer_access(
    settings: KafkaSettings, topics: tuple[str, ...], group: str, what: str, timeout: float
) -> None:
    """Raise :class:`AuthorizationError` unless the principal may READ ``topics`` and join
    (READ) the consumer ``group``; asked of the broker without joining anything."""
    if not secured(settings):
        return
    outcome = login_outcome(settings, timeout)
    if isinstance(outcome, AuthenticationError):
        raise outcome
    if not outcome:
        return  # no broker answers: the consumer waits for one, as without a login
    for topic in topics:
        check_topic_operations(settings, topic, ("READ",), what, timeout)
    admin = AdminClient(settings.admin_config())
    future = admin.describe_consumer_groups(
        [group], include_authorized_operations=True, request_timeout=timeout
    )[group]
    try:
        description: Any = future.result(timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() in AUTHORIZATION_CODES:
            raise denied(settings, "group", group, "READ", what) from exc
        return
    allowed = description.authorized_operations
    names = {getattr(op, "name", str(op)) for op in allowed or ()}
    if allowed is not None and "READ" not in names and "ALL" not in names:
        raise denied(settings, "group", group, "READ", what)
