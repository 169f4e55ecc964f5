"""Transactional producers of partition writers: creation, disposal, error classification."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from eventsource.kafka.access import denied
from eventsource.kafka.config import KafkaSettings

__all__ = ["DeliveryMark", "describe", "dispose", "is_fenced", "kafka_error", "new_producer"]

log = logging.getLogger(__name__)
TRANSACTION_LINGER_MS = 100
"""``linger.ms`` of the writers' transactional producers (at most half the delivery timeout)."""

BATCH_FRAMING = 512
"""Bytes kept free under a topic's ``max.message.bytes`` for a record batch's framing."""

_FENCING_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` inside a ``KafkaException``, if any."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error if isinstance(error, KafkaError) else None


def is_fenced(exc: BaseException) -> bool:
    """Whether ``exc`` says a newer producer with our ``transactional.id`` exists."""
    error = kafka_error(exc)
    return error is not None and error.code() in _FENCING_CODES


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a failure for error messages."""
    error = kafka_error(exc)
    if error is not None:
        return f"{error.name()}: {error.str()}"
    return f"{type(exc).__name__}: {exc}"


class DeliveryMark:
    """Delivery report callback that keeps the offset (or error) of one record."""

    __slots__ = ("error", "offset")

    def __init__(self) -> None:
        self.offset: int | None = None
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.error = error
        else:
            self.offset = message.offset()

    def both(self, other: DeliveryMark) -> Callable[[KafkaError | None, Message], None]:
        """A callback that records into this mark and ``other`` (a one-record batch)."""

        def report(error: KafkaError | None, message: Message) -> None:
            self(error, message)
            other(error, message)

        return report


def new_producer(
    settings: KafkaSettings,
    transactional_id: str,
    timeout: float,
    *,
    batch_bytes: int | None = None,
) -> Producer:
    """A transactional producer that has fenced every older one (raises on failure).

    ``batch_bytes`` caps a record batch (``batch.size``): a topic's ``max.message.bytes``
    bounds whole batches, so a group commit of many small events must leave in batches
    under it rather than fail together.
    """
    # commit_transaction() flushes at once whatever linger.ms says, so a long linger costs no
    # latency; it lets a group commit's records leave as one produce request instead of a
    # request per millisecond of the produce loop (less CPU in the client and the broker).
    linger = min(TRANSACTION_LINGER_MS, settings.delivery_timeout_ms // 2)
    overrides: dict[str, object] = {"linger.ms": linger, "allow.auto.create.topics": False}
    if batch_bytes is not None:
        overrides["batch.size"] = max(batch_bytes - BATCH_FRAMING, 1)
    producer = Producer(settings.transactional_producer_config(transactional_id, **overrides))
    try:
        producer.init_transactions(timeout)
    except KafkaException as exc:
        dispose(producer)
        error = kafka_error(exc)
        if error is not None and error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            raise denied(
                settings,
                "transactional id",
                transactional_id,
                "WRITE",
                "the writer cannot start transactions",
            ) from exc
        raise
    except BaseException:
        dispose(producer)
        raise
    return producer


def dispose(producer: Producer, wait: float = 5.0) -> None:
    """Drop a producer without waiting long for undeliverable messages.

    ``close()`` aborts an open transaction and flushes, which can block while the broker is
    down; it runs on a helper thread so a writer never hangs on a producer it gave up on.
    """

    def close() -> None:
        try:
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.close()
        except Exception:  # a broken producer may refuse; it is garbage either way
            log.debug("closing a producer failed", exc_info=True)

    closer = threading.Thread(target=close, name="eventsource-producer-close", daemon=True)
    closer.start()
    closer.join(wait)
