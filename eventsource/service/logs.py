"""structlog JSON logging with secret redaction, for the service runtime and the CLI.

Every log line, whether written through structlog or the standard ``logging`` module, goes
through :class:`Redactor`: values under secret-looking keys become ``***``, passwords inside
URLs become ``***`` and any registered secret value (a SASL password, a database password)
is replaced wherever it appears, exception text included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from eventsource.kafka.config import REDACTED, is_secret_key
from eventsource.service.settings import redact_url


class Redactor:
    """A structlog processor (and a plain text scrubber) that removes secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register more secret values to scrub."""
        self._secrets.update(s for s in secrets if s)
        if self._secrets:
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def scrub(self, text: str) -> str:
        """``text`` without URL passwords or registered secret values."""
        text = redact_url(text)
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return text

    def _clean(self, key: str, value: Any) -> Any:
        if is_secret_key(key):
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub(str(value))

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict


_HANDLER_NAME = "eventsource"

#: The process-wide redactor; :func:`configure_logging` registers the settings' secrets.
REDACTOR = Redactor()


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog and standard logging to one JSON (or console) stream on stderr.

    stdout stays free for command output (``events tail`` writes JSON lines there).
    """
    reset_logging()
    REDACTOR.add(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # ExtraAdder: standard-logging fields such as the Kafka client's ``kafka_kind``.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def reset_logging() -> None:
    """Remove the handler :func:`configure_logging` installed (tests, repeated set-up)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    structlog.reset_defaults()


def get_logger(name: str = "eventsource", **bound: Any) -> Any:
    """A structlog logger, optionally bound with context (projection, topic, ...)."""
    return structlog.get_logger(name).bind(**bound)
