"""The composition of a projector service: runners, supervisor, probes, metrics, logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsource.errors import ConfigurationError
from eventsource.kafka.admin import topic_not_found, topic_partitions
from eventsource.kafka.config import KafkaSettings, redact
from eventsource.kafka.group_session import session_settings
from eventsource.projection import Projection, ProjectionRunner
from eventsource.service.follow import VersionFollower
from eventsource.service.health import HealthServer
from eventsource.service.logs import configure_logging, get_logger
from eventsource.service.metrics import MetricsListener, ServiceMetrics
from eventsource.service.settings import ServiceSettings, redact_url, secret_values
from eventsource.service.signals import StopSignals
from eventsource.service.supervisor import ExitCode, Supervisor, Unit


def serve(
    projections: Sequence[Projection],
    kafka: KafkaSettings,
    service: ServiceSettings,
    *,
    group_id: str | None = None,
    metrics: ServiceMetrics | None = None,
    signals: StopSignals | None = None,
    pinned: bool = False,
) -> ExitCode:
    """Run ``projections`` until SIGTERM/SIGINT (or a fatal error); returns the exit code.

    Each projection gets its own runner thread and consumer group
    (``<application_id>.projection.<name>.v<version>`` unless ``group_id`` is given);
    more processes with the same projections share the partitions. ``signals``: handlers
    installed before start-up (see :mod:`eventsource.service.signals`); without them the
    supervisor installs its own for the duration of the run. Each projection follows its
    live version unless ``pinned`` (see :mod:`eventsource.service.follow`).
    """
    configure_logging(service.log_level, service.log_format, secrets=secret_values(kafka, service))
    log = get_logger("eventsource.service")
    if signals is not None and signals.event.is_set():
        # Nothing was started, so there is nothing to drain: a clean stop, not a failure.
        log.info("stop requested during start-up", signal=signals.received)
        log.info("service stopped", exit_code=int(ExitCode.OK))
        return ExitCode.OK
    metrics = metrics or ServiceMetrics()
    units = [_unit(p, kafka, service, metrics, group_id, log, pinned) for p in projections]
    supervisor = Supervisor(
        units, drain_timeout_s=service.drain_timeout_s, log=log, signals=signals
    )
    server: HealthServer | None = None
    if service.http_port is not None:
        server = HealthServer(
            supervisor.readiness, metrics.registry, host=service.http_host, port=service.http_port
        ).start()
    log.info(
        "service starting",
        projections=[f"{p.name} v{p.version}" for p in projections],
        topics=sorted({t for p in projections for t in p.topics}),
        database_url=redact_url(service.database_url),
        kafka={k: v for k, v in redact(kafka.common()).items() if isinstance(v, str | int)},
        http_port=server.port if server else None,
        batch_size=service.batch_size,
    )
    try:
        code = supervisor.run()
    finally:
        if server is not None:
            server.close(5.0)
    log.info("service stopped", exit_code=int(code))
    return code


def membership(kafka: KafkaSettings, service: ServiceSettings) -> dict[str, Any]:
    """Consumer settings for a takeover after a crash (measured in the production how-to):
    static membership when the replica has a stable identity, and a 20 s session timeout
    with heartbeats at most 1 s apart, so that a group coordinator's failover does not
    revoke every partition (see :mod:`eventsource.kafka.group_session`). A ``-X`` setting
    of the same key wins; the heartbeat follows a ``-X session.timeout.ms``."""
    given = kafka.kafka_extra.get("session.timeout.ms", service.session_timeout_ms)
    try:
        session = int(given)
    except ValueError:
        raise ConfigurationError(
            f"-X session.timeout.ms={given!r} is not a whole number of milliseconds: "
            "give one such as 20000 (or set EVENTSOURCE_SESSION_TIMEOUT_MS instead)"
        ) from None
    overrides: dict[str, Any] = session_settings(session)
    identity = service.member_identity()
    if identity:
        overrides["group.instance.id"] = identity
    return {k: v for k, v in overrides.items() if k not in kafka.kafka_extra}


def _unit(
    projection: Projection,
    kafka: KafkaSettings,
    service: ServiceSettings,
    metrics: ServiceMetrics,
    group_id: str | None,
    log: Any,
    pinned: bool,
) -> Unit:
    bound = log.bind(projection=projection.name)
    listener = MetricsListener(metrics, projection.name, bound)
    follower = VersionFollower(projection, service.database_url, pinned=pinned)

    def factory(lst: MetricsListener) -> ProjectionRunner:
        # At every (re)start: a broker that does not answer is retried with backoff (and
        # /readyz shows the error); a missing topic is a configuration error (exit 2).
        current = follower.start()  # the live version, unless pinned (see service.follow)
        check_topics(kafka, current)
        runner = ProjectionRunner(
            current,
            kafka,
            service.database_url,
            batch_size=service.batch_size,
            group_id=group_id,
            listener=lst,
            consumer_overrides=membership(kafka, service),
        )
        follow()  # readiness knows the version and whether it is live from the start
        log.info("running version", projection=projection.name, version=runner.projection.version)
        return runner

    def follow() -> bool:
        switch, not_live = follower.check()
        listener.set_version(follower.current.version, not_live)
        return switch

    return Unit(projection.name, factory, listener, follow)


def check_topics(kafka: KafkaSettings, projection: Projection) -> None:
    """Raise TopicNotFoundError for a topic of ``projection`` the cluster does not have
    (BrokerUnreachableError if no broker answers within the connect timeout)."""
    existing = topic_partitions(kafka, timeout=kafka.connect_timeout_s)
    for topic in projection.topics:
        if topic not in existing:
            raise topic_not_found(topic, kafka, f" of projection {projection.name!r}")
