"""``eventsource run``: projections as a long-running service."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from eventsource.cli.common import (
    LIBRDKAFKA_LOG,
    BootstrapOpt,
    DatabaseOpt,
    PropertyOpt,
    exit_codes,
    load_settings,
)
from eventsource.cli.projecting import NameOpt, TopicsOpt, load_projections
from eventsource.service.logs import get_logger
from eventsource.service.runtime import serve
from eventsource.service.shutdown import leave, report_crashes
from eventsource.service.signals import stop_signals


def run(
    projection: Annotated[
        list[str], typer.Argument(help="Projections by import path (module:attribute).")
    ],
    http_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /healthz, /readyz and /metrics (0: any free port).",
            show_default="$EVENTSOURCE_HTTP_PORT or 9464",
        ),
    ] = None,
    http_host: Annotated[
        str | None,
        typer.Option(
            help="Address the probes listen on.",
            show_default="$EVENTSOURCE_HTTP_HOST or 0.0.0.0",
        ),
    ] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Serve no probes.")] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Records per database transaction.",
            show_default="$EVENTSOURCE_BATCH_SIZE or 5000",
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds SIGTERM/SIGINT may take to finish the in-flight batches.",
            show_default="$EVENTSOURCE_DRAIN_TIMEOUT_S or 20",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="DEBUG, INFO, WARNING or ERROR.", show_default="$EVENTSOURCE_LOG_LEVEL or INFO"
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="json or console.", show_default="$EVENTSOURCE_LOG_FORMAT or json"),
    ] = None,
    group_id: Annotated[
        str | None,
        typer.Option(
            help="Consumer group.",
            show_default="<application_id>.projection.<name>.v<version>",
        ),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            help="Stable identity of this replica (group.instance.id): restarted after a "
            "crash, it takes its partitions back at once [default: $EVENTSOURCE_INSTANCE_ID, "
            "else the pod name in Kubernetes, else none (a 20 s session timeout bounds the "
            "wait)]. Never give two live replicas the same one.",
            show_default=False,
        ),
    ] = None,
    name: NameOpt = None,
    version: Annotated[
        int | None,
        typer.Option(
            "--projection-version",
            min=1,
            help="Run this version only (pinned; not ready while it is not live). Without "
            "it the service follows the live version, switching after a rebuild's swap.",
            show_default=False,
        ),
    ] = None,
    topic: TopicsOpt = None,
    database_url: DatabaseOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    prop: PropertyOpt = None,
) -> None:
    """Run projections as a service until SIGTERM or SIGINT.

    One runner thread and consumer group per projection: start more processes to share the
    partitions. Each projection follows its live version: after 'eventsource rebuild'
    swaps a new version live, the service switches to it within seconds, without a
    restart. SIGTERM/SIGINT finish and commit the in-flight batch, leave the group and
    exit 0 (1 if the drain exceeds --drain-timeout; a second signal exits at once).
    Logs are JSON lines on stderr; /healthz, /readyz and /metrics are served over HTTP.

    Examples:

      eventsource run examples.bank.projections:AccountBalances -d sqlite:///balances.db

      EVENTSOURCE_DATABASE_URL=postgresql+psycopg://app@db/app eventsource run
      app.read:Balances app.read:Statements --http-port 9464
    """
    signals = stop_signals()  # before anything slow: see eventsource.service.signals
    report_crashes()  # a crash prints every thread's stack: see eventsource.service.shutdown
    with exit_codes():
        settings = load_settings(
            bootstrap_servers,
            prop,
            database_url,
            http_port=http_port,
            http_host=http_host,
            batch_size=batch_size,
            drain_timeout_s=drain_timeout,
            log_level=log_level,
            log_format=log_format,
            instance_id=instance_id,
        )
        service = settings.service
        if no_http:
            service = service.model_copy(update={"http_port": None})
        projections = load_projections(projection, name, topic, version)
        # The Kafka client's warnings (broker down, reconnecting) become JSON log lines.
        LIBRDKAFKA_LOG.setLevel(max(logging.WARNING, logging.getLevelName(service.log_level)))
        # Not settings.kafka: a service waits for a broker that is down (and says so in
        # /readyz) instead of failing like a one-shot command.
        code = serve(
            projections,
            settings.kafka_unchecked,
            service,
            group_id=group_id,
            signals=signals,
            pinned=version is not None,
        )
        # No Kafka client left running under interpreter shutdown (it could crash the exit).
        leave(int(code), get_logger("eventsource.service"))
    raise typer.Exit(int(code))
