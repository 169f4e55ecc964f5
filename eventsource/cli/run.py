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
from eventsource.service.runtime import serve
from eventsource.service.signals import stop_signals


def run(
    projection: Annotated[
        list[str], typer.Argument(help="Projections by import path (module:attribute).")
    ],
    http_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /healthz, /readyz and /metrics (0: any free port) "
            "[default: $EVENTSOURCE_HTTP_PORT or 9464].",
            show_default=False,
        ),
    ] = None,
    http_host: Annotated[
        str | None,
        typer.Option(help="Address the probes listen on [default: 0.0.0.0].", show_default=False),
    ] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Serve no probes.")] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Records per database transaction [default: 5000].", show_default=False
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds SIGTERM/SIGINT may take to finish the in-flight batches [default: 20].",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="DEBUG, INFO, WARNING or ERROR [default: INFO].", show_default=False),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="json or console [default: json].", show_default=False)
    ] = None,
    group_id: Annotated[
        str | None,
        typer.Option(
            help="Consumer group [default: <application_id>.projection.<name>.v<version>].",
            show_default=False,
        ),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            help="Stable identity of this replica (group.instance.id): restarted after a "
            "crash, it takes its partitions back at once [default: $EVENTSOURCE_INSTANCE_ID, "
            "else the pod name in Kubernetes, else none (a 10 s session timeout bounds the "
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
        code = serve(
            projections,
            settings.kafka,
            service,
            group_id=group_id,
            signals=signals,
            pinned=version is not None,
        )
    raise typer.Exit(int(code))
