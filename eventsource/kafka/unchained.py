"""Calls into confluent-kafka that cannot keep the exception being handled alive.

confluent-kafka 2.16.1 raises the errors of its synchronous calls (``list_topics``,
``get_watermark_offsets``, ``committed``, ``init_transactions``, ``begin_transaction``,
``abort_transaction``, a client refusing its configuration, ...) with a ``KafkaError`` it
never releases, and that ``KafkaError`` passes for an exception: when the call is made
while another exception is being handled (in an ``except`` or ``finally`` block, or in
anything such a block calls), CPython stores the handled exception in it as its context.
The handled exception, the frames of its traceback and everything they hold (a client and
its librdkafka threads, say) then live until the process exits; no ``gc.collect()`` frees
them. The admin API's futures raise in Python and ``Consumer.close`` raises nothing: those
do not leak.

So a Kafka call never runs while an exception is handled. Where the call is ours to
place, the code keeps the error, leaves the ``except`` block and then calls (the writers'
recovery, a service thread's clean-up, ``dlq replay`` stopping at a poison record).
Where it can be reached from anywhere (a future's done callback), :func:`unchained`
runs it: directly when nothing is handled, else on a short thread of its own, which
handles nothing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["unchained"]

P = ParamSpec("P")
T = TypeVar("T")


def unchained(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``call(*args, **kwargs)``, never while an exception is being handled (see the module
    docstring): on the caller's thread when none is (the common case, no thread), else on
    a new thread joined at once; what it raises is raised again here."""
    if sys.exc_info()[1] is None:
        return call(*args, **kwargs)
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call(*args, **kwargs))
        except BaseException as exc:  # raised again on the caller's thread
            failure.append(exc)

    name = getattr(call, "__name__", "call")
    thread = threading.Thread(target=run, name=f"unchained-{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure.pop()
    return result[0]
