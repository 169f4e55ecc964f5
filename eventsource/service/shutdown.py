"""How ``eventsource run`` ends: no Kafka client left running under interpreter shutdown.

A confluent-kafka client that is still alive when the interpreter shuts down keeps its
librdkafka threads running (reconnecting, logging in over TLS) while Python and the C
libraries tear down their state: the process can die of SIGSEGV after it logged its exit
code, and the orchestrator then sees -11 instead of the documented code. Every client
the service makes is released on the path that made it; :func:`leave` is the last step:
it destroys the clients that are only garbage now, on the main thread, and ends the
process at once (``os._exit``, after flushing the logs) when a thread may still be inside
librdkafka: a consumer close that was abandoned, a runner the drain bound gave up on, or
the threads of a client something still holds (librdkafka names them ``rdk:...``).
:func:`report_crashes` makes a crash print every thread's Python stack to stderr.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from eventsource.kafka.fetch import abandoned_closes
from eventsource.service.supervisor import RUNNER_THREAD_PREFIX

__all__ = ["busy_in_kafka", "leave", "librdkafka_threads", "report_crashes"]


def report_crashes() -> None:
    """On a fatal signal (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL), print the Python
    stack of every thread to stderr before dying (:mod:`faulthandler`)."""
    if not faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr, all_threads=True)


def librdkafka_threads() -> int:
    """Threads of the live librdkafka clients of this process (0 where ``/proc`` is not)."""
    count = 0
    tasks = Path("/proc/self/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():
        try:
            count += (task / "comm").read_text().startswith("rdk:")
        except OSError:  # the thread ended meanwhile
            continue
    return count


def busy_in_kafka() -> list[str]:
    """What may still be inside librdkafka: abandoned consumer closes, runner threads that
    outlived the drain bound, and the threads of clients still alive."""
    runners = [
        t.name
        for t in threading.enumerate()
        if t.name.startswith(RUNNER_THREAD_PREFIX) and t.is_alive()
    ]
    clients = librdkafka_threads()
    alive = [f"{clients} librdkafka thread(s) of clients still alive"] if clients else []
    return [*abandoned_closes(), *runners, *alive]


def leave(code: int, log: Any | None = None) -> None:
    """Return when the interpreter may shut down normally; otherwise end the process now
    with ``code``, saying why through ``log`` (a structlog logger), or without one (the
    one-shot commands, whose stdout may be JSON) in a line on stderr."""
    gc.collect()  # clients in unreachable cycles are destroyed here, not during shutdown
    busy = busy_in_kafka()
    if not busy:
        return
    if log is not None:
        log.warning(
            "exiting at once: threads are still inside the Kafka client",
            threads=busy,
            exit_code=code,
        )
    else:
        sys.stderr.write(
            f"eventsource: exiting at once with code {code}: threads are still inside the "
            f"Kafka client ({', '.join(busy)})\n"
        )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
