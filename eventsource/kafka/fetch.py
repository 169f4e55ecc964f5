"""Fetch what a consumer has now without waiting out ``consume()``'s whole timeout, and
close a consumer without hanging.

``Consumer.consume(n, timeout)`` returns only when ``n`` records arrived or ``timeout``
passed, so every batch smaller than ``n`` costs the whole timeout: a projection one event
behind waited half a second to apply it, and every ``run_until_caught_up`` call, store
catch-up and dead-letter read ended with a full idle wait. ``next_batch`` polls for the
first record (``poll`` returns as soon as one is there) and then takes, without waiting,
what librdkafka has already fetched.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, Message

__all__ = ["CONSUMER_CLOSE_TIMEOUT_S", "abandoned_closes", "close_consumer", "next_batch"]

log = logging.getLogger(__name__)


def next_batch(consumer: Consumer, wait: float, max_messages: int = 500) -> list[Message]:
    """Up to ``max_messages`` records (or error events) available now, waiting up to
    ``wait`` seconds for the first one; ``[]`` when none came within ``wait``."""
    first = consumer.poll(wait)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=0)]


CONSUMER_CLOSE_TIMEOUT_S = 30.0
"""How long closing a consumer may take before it is abandoned (see ``close_consumer``)."""

_abandoned: list[threading.Thread] = []
_abandoned_lock = threading.Lock()


def abandoned_closes() -> list[str]:
    """Names of the close threads ``close_consumer`` gave up on that are still inside
    ``close()``: a process must not shut its interpreter down under them (see
    :func:`eventsource.service.shutdown.leave`)."""
    with _abandoned_lock:
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        return [t.name for t in _abandoned]


def close_consumer(
    consumer: Consumer, timeout: float = CONSUMER_CLOSE_TIMEOUT_S, what: str = "consumer"
) -> bool:
    """Close ``consumer`` (leave its group), giving up after ``timeout`` seconds.

    librdkafka can hang forever in ``close()`` when a partition assignment arrives while
    it closes (``assign()`` from the rebalance callback never returns: librdkafka issue
    4884; seen once in this project's tests). Positions live in the read-model database,
    so an abandoned close loses nothing: the group drops the member after its session
    timeout. Returns False (and logs a warning) when the close was abandoned.
    """
    done = threading.Event()

    def close() -> None:
        try:
            consumer.close()
        finally:
            done.set()

    thread = threading.Thread(target=close, name=f"close-{what}", daemon=True)
    thread.start()
    if done.wait(timeout):
        return True
    with _abandoned_lock:
        _abandoned.append(thread)
    log.warning(
        "closing the %s did not finish within %.0f s (a librdkafka hang during a "
        "rebalance); abandoned it: the group drops the member after its session timeout",
        what,
        timeout,
    )
    return False
