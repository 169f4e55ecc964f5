"""Long-running runtime of projectors: settings, logging, metrics, health, supervision."""

from eventsource.service.loader import load_object
from eventsource.service.runtime import serve
from eventsource.service.settings import ServiceSettings, kafka_settings, redact_url
from eventsource.service.supervisor import ExitCode, Supervisor, Unit

__all__ = [
    "ExitCode",
    "ServiceSettings",
    "Supervisor",
    "Unit",
    "kafka_settings",
    "load_object",
    "redact_url",
    "serve",
]
