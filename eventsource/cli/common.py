"""What every command shares: connection options, settings, output, errors and exit codes.

Exit codes (:class:`ExitCode`, one table in the CLI reference): 0 ok, 1 operational
failure (broker or database unreachable), 2 usage or configuration error (a missing topic
included), 3 a projection stopped at a poison record, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
from confluent_kafka import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from eventsource.errors import (
    BrokerError,
    ConfigurationError,
    EventSourceError,
    ProjectionStoppedError,
)
from eventsource.kafka.client_logs import TARGET as CLIENT_LOG_TARGET
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.reach import check_reachable
from eventsource.projection.dberrors import database_error, database_of
from eventsource.service.logs import REDACTOR
from eventsource.service.settings import (
    ServiceSettings,
    kafka_settings,
    parse_properties,
    secret_values,
)
from eventsource.service.supervisor import ExitCode

#: librdkafka's own log lines (connection refused, ...), re-levelled and rate-limited by
#: :mod:`eventsource.kafka.client_logs`: quiet for one-shot commands unless ``--verbose``,
#: JSON log lines for ``run``.
LIBRDKAFKA_LOG = CLIENT_LOG_TARGET

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka bootstrap servers (host:port, comma-separated).",
        show_default="$EVENTSOURCE_BOOTSTRAP_SERVERS or 127.0.0.1:9092",
    ),
]
PropertyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--property",
        "-X",
        help="librdkafka property key=value, repeatable (SASL/SSL included); secrets are "
        "never printed. Also $EVENTSOURCE_KAFKA_EXTRA as a JSON object.",
        show_default=False,
    ),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "-d",
        help="Read-model database: a SQLite path, sqlite:///path or "
        "postgresql://user:password@host/db.",
        show_default="$EVENTSOURCE_DATABASE_URL or sqlite:///.eventsource/readmodels.db",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


#: ``eventsource --connect-timeout SECONDS``: set by the root callback before any command.
connect_timeout: list[float] = []


@dataclass
class Settings:
    """Kafka and service settings of one command.

    The first read of :attr:`kafka` checks that a broker answers within the connect timeout
    (:class:`~eventsource.errors.BrokerUnreachableError` otherwise), so a command fails in
    seconds with one line instead of waiting on librdkafka's retries. Commands read it only
    once their own arguments are checked; ``run`` reads :attr:`kafka_unchecked`, since a
    service rides out a broker that is down.
    """

    kafka_unchecked: KafkaSettings
    service: ServiceSettings
    _checked: bool = False

    @property
    def kafka(self) -> KafkaSettings:
        if not self._checked:
            check_reachable(self.kafka_unchecked)
            self._checked = True
        return self.kafka_unchecked


def load_settings(
    bootstrap_servers: str | None = None,
    properties: list[str] | None = None,
    database_url: str | None = None,
    **service: Any,
) -> Settings:
    """Environment + flags -> settings; registers every secret with the output scrubber."""
    kafka = kafka_settings(bootstrap_servers, parse_properties(properties or []))
    if connect_timeout:
        kafka = kafka.model_copy(update={"connect_timeout_s": connect_timeout[-1]})
    REDACTOR.add(secret_values(kafka, None))
    overrides = {k: v for k, v in service.items() if v is not None}
    if database_url:
        overrides["database_url"] = database_url
    try:
        svc = ServiceSettings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_validation_message(exc)) from exc
    REDACTOR.add(secret_values(kafka, svc))
    return Settings(kafka, svc)


def _validation_message(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return "invalid settings: " + "; ".join(parts)


def fail(message: str, code: ExitCode = ExitCode.FAILURE) -> NoReturn:
    """Print ``error: message`` (scrubbed of secrets) on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {REDACTOR.scrub(message)}\n")
    sys.stderr.flush()
    raise typer.Exit(int(code))


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """Turn the library's errors into one scrubbed line on stderr and a meaningful code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except ProjectionStoppedError as exc:
        fail(str(exc), ExitCode.POISON)
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.USAGE)
    except EventSourceError as exc:
        fail(str(exc), ExitCode.FAILURE)
    except DBAPIError as exc:
        url = database_of(exc)
        if url is None:
            fail(f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}", ExitCode.FAILURE)
        named = database_error(url, exc)
        usage = isinstance(named, ConfigurationError)
        fail(str(named), ExitCode.USAGE if usage else ExitCode.FAILURE)
    except Exception as exc:
        fail(f"{type(exc).__name__}: {exc}", ExitCode.FAILURE)


def emit_json(data: Any) -> None:
    """One JSON document (or line) on stdout."""
    sys.stdout.write(json.dumps(data, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def kafka_error(exc: BaseException, what: str) -> EventSourceError:
    """Wrap a confluent-kafka error, keeping ``retriable`` where Kafka says so."""
    error: Any = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return BrokerError(f"{what}: {error.str()}", retriable=bool(error.retriable()))
    return BrokerError(f"{what}: {exc}")
