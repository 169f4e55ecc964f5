"""Fetch what a consumer has now without waiting out ``consume()``'s whole timeout.

``Consumer.consume(n, timeout)`` returns only when ``n`` records arrived or ``timeout``
passed, so every batch smaller than ``n`` costs the whole timeout: a projection one event
behind waited half a second to apply it, and every ``run_until_caught_up`` call, store
catch-up and dead-letter read ended with a full idle wait. ``next_batch`` polls for the
first record (``poll`` returns as soon as one is there) and then takes, without waiting,
what librdkafka has already fetched.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message

__all__ = ["next_batch"]


def next_batch(consumer: Consumer, wait: float, max_messages: int = 500) -> list[Message]:
    """Up to ``max_messages`` records (or error events) available now, waiting up to
    ``wait`` seconds for the first one; ``[]`` when none came within ``wait``."""
    first = consumer.poll(wait)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=0)]
