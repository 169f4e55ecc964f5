"""Wait until positions just written are readable by ``read_committed`` consumers.

``commit_transaction()`` returns before the broker has written the transaction's commit
markers, so for a moment the last stable offset (the end a ``read_committed`` consumer
sees) can still be below records whose append has returned. Anything that reads "up to
now" right after writing (a replay, a test) and must see those records waits here first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from eventsource.domain import Position
from eventsource.errors import WaitTimeoutError

__all__ = ["wait_until_readable"]


def wait_until_readable(
    consumer: Consumer, positions: Iterable[Position], timeout: float = 30.0
) -> None:
    """Return once every partition's last stable offset is past its highest position.

    ``consumer`` must be ``read_committed`` (every consumer the framework configures is).
    Raises WaitTimeoutError naming the partitions still behind after ``timeout`` seconds.
    """
    needed: dict[tuple[str, int], int] = {}
    for p in positions:
        needed[(p.topic, p.partition)] = max(needed.get((p.topic, p.partition), 0), p.offset + 1)
    deadline = time.monotonic() + timeout
    while True:
        behind = {}
        for (topic, partition), end in sorted(needed.items()):
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition),
                timeout=max(0.1, deadline - time.monotonic()),
                cached=False,
            )
            if high < end:
                behind[f"{topic}[{partition}]"] = (high, end)
        if not behind:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"the written positions did not become readable within {timeout}s "
                f"((last stable offset, needed) per partition: {behind}): a transaction "
                "that was reported committed has no commit marker yet; is the broker "
                "(transaction coordinator) healthy?"
            )
        time.sleep(0.02)
