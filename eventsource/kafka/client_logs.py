"""librdkafka's own log lines, routed through the project's logging at the level they deserve.

Every confluent-kafka client (``Producer``, ``Consumer``, ``AdminClient``) gets its
configuration from :class:`~eventsource.kafka.config.KafkaSettings`, which adds
``"logger": CLIENT_LOG`` through :func:`with_client_log`. confluent-kafka then hands each
line to ``CLIENT_LOG.log(level, "%s [%s] %s", facility, client, message)`` on the thread that
polls the client, with the level already mapped from syslog (0-2 CRITICAL, 3 ERROR,
4 WARNING, 5-6 INFO, 7 DEBUG; librdkafka's ``log_level`` defaults to 6 and ``debug`` is off,
so ``-X debug=broker`` adds DEBUG lines). Without a ``logger`` librdkafka writes to stderr
itself: about 600 lines in 30 s while a broker is down.

:class:`ClientLog` re-levels what librdkafka over-states (a refused connection during a
broker restart is a warning, "coordinator load in progress" is routine) and rate-limits per
kind, so an outage gives a few clear lines, each saying how many like it were not shown.
The lines go to the standard logger ``eventsource.kafka.client``: silent in a library until
the application configures logging, JSON through structlog in ``eventsource run``, and
shown by the CLI only with ``--verbose``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CLIENT_LOG", "ClientLog", "admin_log_config", "classify", "with_client_log"]

TARGET = logging.getLogger("eventsource.kafka.client")
"""The standard logger every client line ends up in."""
TARGET.addHandler(logging.NullHandler())  # a library prints nothing unless asked to

RATE_WINDOW_S = 30.0
"""At most one line of each kind per window; the next one counts those left out."""

# confluent-kafka's Producer.close() aborts an open transaction and warns when that fails
# (the broker is down, or the producer was fenced): the writer that dropped the producer
# has already reported why, so the warning would only repeat it without context.
warnings.filterwarnings(
    "ignore",
    message=r"Producer (abort_transaction|flush) failed during close",
    category=RuntimeWarning,
)


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    level: int | None  # None keeps librdkafka's level
    kind: str


_RULES = (
    # Routine: the transaction coordinator is loading its log; librdkafka retries by itself.
    _Rule(re.compile(r"coordinator load in progress", re.I), logging.DEBUG, "coordinator-loading"),
    # Routine: a client closing while messages were queued.
    _Rule(re.compile(r"^BGQUEUE$|purging", re.I), logging.DEBUG, "purging"),
    # An idle connection closed by the broker, or the other end going away cleanly.
    _Rule(re.compile(r"\bdisconnected\b", re.I), logging.INFO, "disconnected"),
    # Authentication and TLS failures are misconfiguration: they stay errors.
    _Rule(re.compile(r"sasl|authenticat|ssl handshake|certificate", re.I), None, "authentication"),
    # A broker down or restarting: the client reconnects on its own; the caller's
    # operation reports a typed error if it cannot finish in time.
    _Rule(
        re.compile(
            r"connection refused|connect to .* failed|brokers are down|transport failure|"
            r"connection reset|timed out|receive failed|send failed|resolve",
            re.I,
        ),
        logging.WARNING,
        "broker-unreachable",
    ),
)
_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]:\s*")


def classify(level: int, facility: str, message: str) -> tuple[int, str]:
    """The level a librdkafka line deserves, and its kind (the unit of rate limiting)."""
    for rule in _RULES:
        if rule.pattern.search(facility) or rule.pattern.search(message):
            return (level if rule.level is None else rule.level), rule.kind
    return level, facility.lower() or "other"


class ClientLog:
    """The ``logger`` object given to confluent-kafka: re-levels and rate-limits its lines."""

    def __init__(
        self,
        target: logging.Logger = TARGET,
        window: float = RATE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # kind -> when its last line was written
        self._suppressed: dict[str, int] = {}  # kind -> lines left out since then

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """What confluent-kafka calls: ``log(level, "%s [%s] %s", facility, client, text)``."""
        facility, client, text = _parts(msg, args)
        level, kind = classify(level, facility, text)
        if not self.target.isEnabledFor(level):
            return
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.window:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            left_out = self._suppressed.pop(kind, 0)
        more = (
            f" ({left_out} more like this in the last {self.window:.0f} s not shown)"
            if left_out
            else ""
        )
        self.target.log(
            level,
            "kafka client %s %s: %s%s",
            client,
            facility,
            _THREAD_PREFIX.sub("", text),
            more,
            extra={"kafka_facility": facility, "kafka_kind": kind, "suppressed": left_out},
        )


def _parts(msg: str, args: tuple[Any, ...]) -> tuple[str, str, str]:
    if len(args) == 3:
        return str(args[0]), str(args[1]), str(args[2])
    try:
        return "", "", msg % args if args else msg
    except (TypeError, ValueError):
        return "", "", " ".join([msg, *map(str, args)])


CLIENT_LOG = ClientLog()
"""The one ``logger`` every client built from :class:`KafkaSettings` gets."""


def with_client_log(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with ``logger`` set to :data:`CLIENT_LOG` (unless it names one already)."""
    return {"logger": CLIENT_LOG, **config}


UNPOLLED_LOG_LEVEL = 2
"""librdkafka ``log_level`` (syslog: 2 = critical) of clients nobody polls."""


def admin_log_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` for an AdminClient: routed, and logging critical lines only.

    A client's lines wait in its queue until it is polled, and nothing polls an admin
    client (its operations return futures and raise typed errors): during an outage a
    long-lived one would pile up a line a second. ``log_level`` drops them at the source;
    an explicit ``log_level`` in ``config`` (``-X log_level=7``) wins.
    """
    return with_client_log({"log_level": UNPOLLED_LOG_LEVEL, **config})
