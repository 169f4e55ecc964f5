"""``eventsource dev``: local development services (a real single-node Kafka broker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from eventsource.errors import ConfigurationError, EventSourceError
from eventsource.kafka.acls import AclAdmin
from eventsource.kafka.cluster import LocalKafkaCluster
from eventsource.kafka.launcher import DEFAULT_VERSION, LocalKafka
from eventsource.kafka.security import LocalSecurity

app = typer.Typer(help="Local development services.", no_args_is_help=True)
kafka_app = typer.Typer(
    help="A local Apache Kafka broker or cluster (KRaft) from Maven Central jars.",
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")

PortOption = typer.Option(
    9092, "--port", envvar="EVENTSOURCE_KAFKA_PORT", help="Client port on 127.0.0.1."
)
ControllerPortOption = typer.Option(
    9093,
    "--controller-port",
    envvar="EVENTSOURCE_KAFKA_CONTROLLER_PORT",
    help="KRaft controller port.",
)
HomeOption = typer.Option(
    None,
    "--home",
    help="Broker home (config, data, logs); default $EVENTSOURCE_HOME/kafka-<port> "
    "or ~/.cache/eventsource/kafka-<port>.",
)

BrokersOption = typer.Option(
    1,
    "--brokers",
    min=1,
    help="Nodes: 1 (a single broker) or more (a KRaft cluster; node i listens on "
    "port+2(i-1), its controller on the next port; home default kafka-cluster-<port>).",
)


SecureOption = typer.Option(
    False,
    "--secure",
    help="Clients connect with SASL/SCRAM-SHA-512 over TLS (a throwaway CA in <home>/security), "
    "ACLs enforced; the admin user is a super user.",
)


def _cluster(
    brokers: int,
    port: int,
    home: Path | None,
    version: str = DEFAULT_VERSION,
    secure: bool = False,
) -> LocalKafkaCluster:
    try:
        return LocalKafkaCluster(
            home=home, brokers=brokers, port=port, version=version, secure=secure
        )
    except EventSourceError as exc:
        _fail(exc)


def _broker(
    port: int, controller_port: int, home: Path | None, version: str, secure: bool = False
) -> LocalKafka:
    try:
        kafka = LocalKafka(home=home, port=port, controller_port=controller_port, version=version)
    except EventSourceError as exc:
        _fail(exc)
    if secure:
        kafka.security = LocalSecurity(kafka.home / "security")
    return kafka


def _security_note(security: LocalSecurity | None) -> None:
    if security is None:
        return
    env = security.environment()
    del env["EVENTSOURCE_SASL_PASSWORD"]
    where = security.directory / "credentials.json"
    typer.echo(
        "clients: "
        + " ".join(f"{k}={v}" for k, v in env.items())
        + f" EVENTSOURCE_SASL_PASSWORD=<admin_password in {where}>"
    )


def _fail(exc: EventSourceError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)


@kafka_app.command("start")
def start(
    port: int = PortOption,
    controller_port: int = ControllerPortOption,
    home: Path | None = HomeOption,
    version: str = typer.Option(DEFAULT_VERSION, "--version", help="Apache Kafka version."),
    timeout: float = typer.Option(90.0, "--timeout", help="Seconds to wait for the broker."),
    brokers: int = BrokersOption,
    secure: bool = SecureOption,
) -> None:
    """Start the broker (fetching its jars with Maven on first use) and wait until it answers."""
    if brokers > 1:
        _start_cluster(_cluster(brokers, port, home, version, secure), max(timeout, 180.0))
        return
    kafka = _broker(port, controller_port, home, version, secure)
    try:
        status = kafka.start(timeout=timeout)
    except EventSourceError as exc:
        _fail(exc)
    if status.started:
        typer.echo(
            f"Apache Kafka {status.version} started at {status.bootstrap_servers} "
            f"(pid {status.pid}, home {kafka.home}, log {status.log_file})"
        )
    else:
        typer.echo(
            f"Apache Kafka {status.version} already running at {status.bootstrap_servers} "
            f"(pid {status.pid}, home {kafka.home})"
        )
    _security_note(kafka.security)


def _start_cluster(cluster: LocalKafkaCluster, timeout: float) -> None:
    try:
        status = cluster.start(timeout=timeout)
    except EventSourceError as exc:
        _fail(exc)
    pids = ", ".join(str(node.pid) for node in status.nodes)
    typer.echo(
        f"Apache Kafka {cluster.version} cluster of {len(status.nodes)} nodes running at "
        f"{cluster.bootstrap_servers} (pids {pids}, home {cluster.home})"
    )
    _security_note(cluster.security)


@kafka_app.command("stop")
def stop(
    port: int = PortOption,
    controller_port: int = ControllerPortOption,
    home: Path | None = HomeOption,
    timeout: float = typer.Option(20.0, "--timeout", help="Seconds before SIGKILL."),
    brokers: int = BrokersOption,
) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after the timeout), leaving no process behind."""
    if brokers > 1:
        cluster = _cluster(brokers, port, home)
        try:
            nodes = cluster.stop(timeout=timeout)
        except EventSourceError as exc:
            _fail(exc)
        typer.echo(
            f"stopped nodes {', '.join(map(str, sorted(nodes)))} of the cluster at "
            f"{cluster.bootstrap_servers}"
            if nodes
            else f"no node was running at {cluster.bootstrap_servers} (home {cluster.home})"
        )
        return
    kafka = _broker(port, controller_port, home, DEFAULT_VERSION)
    pid = kafka.status().pid
    try:
        stopped = kafka.stop(timeout=timeout)
    except EventSourceError as exc:
        _fail(exc)
    if stopped:
        typer.echo(f"stopped the broker at {kafka.bootstrap_servers} (pid {pid})")
    else:
        typer.echo(f"no broker was running at {kafka.bootstrap_servers} (home {kafka.home})")


@kafka_app.command("status")
def status(
    port: int = PortOption,
    controller_port: int = ControllerPortOption,
    home: Path | None = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    brokers: int = BrokersOption,
) -> None:
    """Is the broker running? Exit code 0 either way; see ``running``."""
    if brokers > 1:
        cluster = _cluster(brokers, port, home).status()
        if as_json:
            typer.echo(json.dumps(cluster.to_dict(), sort_keys=True))
            return
        typer.echo(f"{cluster.running} of {len(cluster.nodes)} nodes running")
        for i, node in enumerate(cluster.nodes, start=1):
            state = f"running (pid {node.pid})" if node.running else "not running"
            typer.echo(f"  node {i} at {node.bootstrap_servers}: {state}, log {node.log_file}")
        return
    kafka = _broker(port, controller_port, home, DEFAULT_VERSION)
    current = kafka.status()
    if as_json:
        typer.echo(json.dumps(current.to_dict(), sort_keys=True))
    elif current.running:
        typer.echo(
            f"Apache Kafka {current.version} running at {current.bootstrap_servers} "
            f"(pid {current.pid}, log {current.log_file})"
        )
    else:
        typer.echo(f"not running (port {port}, home {kafka.home})")


@kafka_app.command("add-user")
def add_user(
    name: str = typer.Argument(..., help="The SCRAM user to create (or whose password to set)."),
    password: str = typer.Option(
        ...,
        "--password",
        envvar="EVENTSOURCE_NEW_USER_PASSWORD",
        prompt=True,
        hide_input=True,
        help="Its password (prompted for unless given or in EVENTSOURCE_NEW_USER_PASSWORD).",
    ),
    port: int = PortOption,
    controller_port: int = ControllerPortOption,
    home: Path | None = HomeOption,
    brokers: int = BrokersOption,
) -> None:
    """Create a SCRAM-SHA-512 user on a broker or cluster started with --secure."""
    admin = _acl_admin(port, controller_port, home, brokers)
    try:
        admin.add_user(name, password)
    except EventSourceError as exc:
        _fail(exc)
    typer.echo(f"user {name!r} can log in with SCRAM-SHA-512")


@kafka_app.command("grant")
def grant(
    user: str = typer.Argument(..., help="The user (principal User:<user>)."),
    resource: str = typer.Argument(
        ..., help="TYPE:NAME, TYPE one of topic, group, transactional_id, cluster."
    ),
    operations: list[str] = typer.Option(
        ..., "--operation", "-o", help="READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS, CREATE, ..."
    ),
    prefixed: bool = typer.Option(False, "--prefixed", help="NAME is a prefix."),
    port: int = PortOption,
    controller_port: int = ControllerPortOption,
    home: Path | None = HomeOption,
    brokers: int = BrokersOption,
) -> None:
    """Allow a user operations on a resource of a broker or cluster started with --secure."""
    kind, sep, name = resource.partition(":")
    if not sep or not name:
        _fail(ConfigurationError(f"resource {resource!r} is not TYPE:NAME (e.g. topic:orders)"))
    admin = _acl_admin(port, controller_port, home, brokers)
    try:
        admin.grant(user, kind, name, operations, prefixed=prefixed)
    except (EventSourceError, KeyError) as exc:
        _fail(exc if isinstance(exc, EventSourceError) else ConfigurationError(f"unknown {exc}"))
    typer.echo(f"User:{user} may {', '.join(operations)} on {kind} {name!r}")


def _acl_admin(port: int, controller_port: int, home: Path | None, brokers: int) -> AclAdmin:
    if brokers > 1:
        cluster = _cluster(brokers, port, home, secure=True)
        assert cluster.security is not None
        return AclAdmin(cluster.bootstrap_servers, cluster.client_config())
    kafka = _broker(port, controller_port, home, DEFAULT_VERSION, secure=True)
    return AclAdmin(kafka.bootstrap_servers, kafka.client_config())


if __name__ == "__main__":  # `python -m eventsource.cli.dev kafka start`, without the other groups
    app()
