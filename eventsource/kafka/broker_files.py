"""Files and tools the local broker needs: Maven-fetched jars, KRaft config, storage format.

Apache Kafka is published to Maven Central as ordinary jars, so a machine with Java and
Maven can run a real broker without Docker or a tarball download. The jars for a version
are fetched once into a shared cache (``~/.cache/eventsource/kafka-jars/<version>``) and
reused by every broker home.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eventsource.errors import BrokerStartError, MissingToolError

LOG4J_VERSION = "2.24.3"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eventsource.local</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <!-- Without an SLF4J binding the broker logs nothing at all. -->
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """appender.file.type=File
appender.file.name=FILE
appender.file.fileName=${sys:kafka.logs.dir}/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=FILE
"""

_COMPLETE_MARKER = ".complete"


def cache_root() -> Path:
    """Where eventsource keeps downloaded jars and default broker homes."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "eventsource"


def find_tool(name: str, hint: str) -> str:
    """Absolute path of ``name`` on ``$PATH``, or :class:`MissingToolError` saying what to do."""
    found = shutil.which(name)
    if found is None:
        raise MissingToolError(
            f"{name!r} was not found on PATH ({os.environ.get('PATH', '')!r}); "
            f"the local Kafka broker needs it: {hint}"
        )
    return found


def find_java() -> str:
    """The ``java`` to run the broker with: ``$JAVA_HOME/bin/java`` first, then ``$PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return find_tool("java", "install a JDK 17 or newer (Debian: apt-get install -y default-jdk)")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two processes (a test session and `make kafka-up`) may fetch the same version at once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(version: str, cache_dir: Path | None = None) -> Path:
    """Directory holding the broker's jars for ``version``; fetched with Maven when absent.

    Returns ``<cache>/kafka-jars/<version>/lib``. Nothing is fetched when a previous call
    completed (a marker file records that), so later starts need neither Maven nor network.
    """
    root = (cache_dir or cache_root()) / "kafka-jars"
    target = root / version
    lib = target / "lib"
    if (target / _COMPLETE_MARKER).exists():
        return lib
    with _file_lock(root / f".{version}.lock"):
        if (target / _COMPLETE_MARKER).exists():
            return lib
        mvn = find_tool("mvn", "install Maven (Debian: apt-get install -y maven)")
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
        try:
            (work / "pom.xml").write_text(_POM.format(version=version, log4j=LOG4J_VERSION))
            command = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={work / 'lib'}",
                "-DincludeScope=runtime",
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not list((work / "lib").glob("kafka_2.13-*.jar")):
                output = (done.stdout + done.stderr).strip().splitlines()[-30:]
                raise BrokerStartError(
                    f"Maven could not fetch Apache Kafka {version} "
                    f"(org.apache.kafka:kafka_2.13:{version}) from Maven Central "
                    f"(exit code {done.returncode}); check the version and network access. "
                    "Maven said:\n" + "\n".join(output)
                )
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
            (target / _COMPLETE_MARKER).write_text(version + "\n")
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return lib


def server_properties(
    port: int,
    controller_port: int,
    data_dir: Path,
    *,
    node_id: int = 1,
    voters: str | None = None,
    replicas: int = 1,
    listener_lines: list[str] | None = None,
) -> str:
    """A combined broker+controller configuration.

    One node (``voters`` None) bootstraps a standalone quorum at ``controller_port``. In a
    cluster, ``voters`` is the static quorum (``1@127.0.0.1:port,2@...``) and ``replicas``
    the node count: the internal topics then get ``min(3, replicas)`` copies and a minimum
    ISR of 2, as a production cluster has them. ``listener_lines`` replace the PLAINTEXT
    listeners (a secure broker: :meth:`eventsource.kafka.security.LocalSecurity.server_properties`).
    """
    listeners = listener_lines or [
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ]
    internal_rf = min(3, replicas)
    internal_isr = min(2, internal_rf)
    quorum = (
        f"controller.quorum.voters={voters}"
        if voters
        else f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}"
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            quorum,
            *listeners,
            f"log.dirs={data_dir}",
            "num.partitions=3",
            # The internal topics default to 3 replicas; on one node init_transactions() and
            # consumer-group commits would wait forever for replicas that cannot exist.
            f"offsets.topic.replication.factor={internal_rf}",
            f"transaction.state.log.replication.factor={internal_rf}",
            f"transaction.state.log.min.isr={internal_isr}",
            f"share.coordinator.state.topic.replication.factor={internal_rf}",
            f"share.coordinator.state.topic.min.isr={internal_isr}",
            # No reason to wait for more group members on a development broker.
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def log4j2_properties() -> str:
    """Logging to ``${kafka.logs.dir}/server.log`` so failures can print the tail."""
    return _LOG4J2


def new_cluster_id() -> str:
    """A KRaft cluster id, as ``kafka-storage random-uuid`` makes it (without a JVM start)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


def is_formatted(data_dir: Path) -> bool:
    """Whether KRaft storage was formatted already (then it must be reused, not reformatted)."""
    return (data_dir / "meta.properties").exists()


def format_storage(
    java: str,
    lib: Path,
    config: Path,
    data_dir: Path,
    cluster_id: str | None = None,
    extra_args: list[str] | None = None,
) -> str:
    """Format ``data_dir`` for KRaft; returns the cluster id.

    Without ``cluster_id`` a new one is made and the node is formatted as a standalone
    controller; a cluster's nodes share one id and a static voter set (their config).
    ``extra_args`` add to the command (``--add-scram ...``); they may hold a password, so
    they are never part of an error message.
    """
    standalone = cluster_id is None
    cluster_id = cluster_id or new_cluster_id()
    command = [
        java,
        "-cp",
        str(lib / "*"),
        "kafka.tools.StorageTool",
        "format",
        *(["--standalone"] if standalone else []),
        "-t",
        cluster_id,
        "-c",
        str(config),
        *(extra_args or []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise BrokerStartError(
            f"formatting KRaft storage in {data_dir} failed (exit code {done.returncode}); "
            f"delete that directory if it is a leftover and retry. Output:\n"
            + (done.stdout + done.stderr).strip()
        )
    return cluster_id
