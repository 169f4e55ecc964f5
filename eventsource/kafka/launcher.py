"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, for development, tests and demos.

Jars come from Maven Central through Maven (see :mod:`eventsource.kafka.broker_files`), so
a machine needs Java 17+ and Maven, not Docker. One broker home holds its configuration,
KRaft data, logs and a pid file; the broker runs in its own session so stopping it takes
the whole process group down::

    kafka = LocalKafka(port=19092, controller_port=19093)
    kafka.start()            # idempotent: reports an already running broker
    ...                      # use kafka.bootstrap_servers
    kafka.stop()             # SIGTERM, then SIGKILL after a timeout
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eventsource.errors import BrokerError, BrokerStartError, ConfigurationError, PortInUseError
from eventsource.kafka import broker_files as files
from eventsource.kafka import broker_process as proc
from eventsource.kafka.broker_files import ensure_jars
from eventsource.kafka.broker_probe import ClusterInfo, admin_client, probe, wait_for_broker
from eventsource.kafka.security import LocalSecurity

__all__ = ["BrokerStatus", "ClusterInfo", "LocalKafka", "ensure_jars", "wait_for_broker"]

DEFAULT_VERSION = "4.1.1"
_log = logging.getLogger(__name__)
_HEAP = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def _initial_heap(heap: str) -> str:
    """256m, or the maximum heap when that is smaller (the JVM refuses Xms > Xmx)."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = int(heap.rstrip("kKmMgG")) * units[heap[-1].lower() if heap[-1].isalpha() else ""]
    return heap if size < 256 << 20 else "256m"


@dataclass(frozen=True)
class BrokerStatus:
    """What a broker home is doing. ``started`` is True only when this call started it."""

    running: bool
    pid: int | None
    bootstrap_servers: str
    version: str
    log_file: Path
    started: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``eventsource dev kafka status --json``)."""
        data = asdict(self)
        data["log_file"] = str(self.log_file)
        return data


class LocalKafka:
    """One broker home: start, stop, kill and inspect a local single-node KRaft broker."""

    def __init__(
        self,
        home: Path | None = None,
        port: int = 9092,
        controller_port: int = 9093,
        version: str = DEFAULT_VERSION,
        heap: str = "1g",
        *,
        node_id: int = 1,
        voters: str | None = None,
        replicas: int = 1,
        cluster_id: str | None = None,
        security: LocalSecurity | None = None,
    ) -> None:
        for name, value in (("port", port), ("controller_port", controller_port)):
            if not 0 < value < 65536:
                raise ConfigurationError(f"{name} {value} is not a TCP port (1-65535)")
        if port == controller_port:
            raise ConfigurationError(
                f"port and controller_port are both {port}; the broker needs two ports"
            )
        if not _HEAP.match(heap):
            raise ConfigurationError(f"heap {heap!r} is not a JVM size such as '512m' or '1g'")
        if home is None:
            base = os.environ.get("EVENTSOURCE_HOME")
            home = (Path(base) if base else files.cache_root()) / f"kafka-{port}"
        self.home = Path(home).expanduser().absolute()
        self.port = port
        self.controller_port = controller_port
        self.version = version
        self.heap = heap
        # Cluster membership (see eventsource.kafka.cluster); one node by default.
        self.node_id = node_id
        self.voters = voters
        self.replicas = replicas
        self.cluster_id = cluster_id
        # SASL_SSL client listener with SCRAM and ACLs (eventsource.kafka.security) when set.
        self.security = security
        self._child: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LocalKafka(home={str(self.home)!r}, port={self.port}, version={self.version!r})"

    @property
    def bootstrap_servers(self) -> str:
        """Address clients connect to."""
        return f"127.0.0.1:{self.port}"

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties a client needs besides the address (the admin's login)."""
        return self.security.client_config() if self.security is not None else {}

    @property
    def log_file(self) -> Path:
        """The broker's log4j log (``server.log``)."""
        return self.home / "logs" / "server.log"

    @property
    def data_dir(self) -> Path:
        """KRaft log directory; kept across restarts (formatted only once)."""
        return self.home / "data"

    @property
    def _config(self) -> Path:
        return self.home / "config" / "server.properties"

    @property
    def _pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def _state_file(self) -> Path:
        return self.home / "broker.json"

    def _running_pid(self) -> int | None:
        """Pid from the pid file if that process is alive and is this home's broker."""
        try:
            pid = int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # Guard against pid reuse: the process must be a java running our config file.
        if proc.pid_alive(pid) and str(self._config) in proc.cmdline(pid):
            return pid
        return None

    def status(self) -> BrokerStatus:
        """Whether this home's broker process is alive (not whether it answers yet)."""
        pid = self._running_pid()
        version = self.version
        if pid is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                version = json.loads(self._state_file.read_text())["version"]
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap_servers=self.bootstrap_servers,
            version=version,
            log_file=self.log_file,
        )

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker and wait until it answers; report it if it already runs."""
        current = self.status()
        if current.running:
            try:
                wait_for_broker(self.bootstrap_servers, timeout, self.client_config())
            except BrokerError as exc:
                raise BrokerStartError(
                    f"a broker process (pid {current.pid}) runs in {self.home} but does not "
                    f"answer at {self.bootstrap_servers}; stop it with `eventsource dev kafka "
                    f"stop --port {self.port}`. Last log lines:\n{self.log_tail()}"
                ) from exc
            return current
        self.launch()
        return self.wait_started(timeout)

    def launch(self) -> None:
        """Spawn the broker process without waiting for it to answer.

        A cluster's nodes answer only once a quorum of them runs, so the cluster launches
        every node first and then waits (:meth:`wait_started`) for each.
        """
        java = files.find_java()
        self._check_ports()  # before fetching jars: a taken port is the cheaper answer
        lib = ensure_jars(self.version)
        if self.security is not None:
            self.security.ensure()
        self._write_config()
        if not files.is_formatted(self.data_dir):
            files.format_storage(
                java,
                lib,
                self._config,
                self.data_dir,
                self.cluster_id,
                self.security.format_args() if self.security is not None else None,
            )
        self._spawn(java, lib)

    def wait_started(self, timeout: float = 90.0) -> BrokerStatus:
        """Wait until the process :meth:`launch` spawned answers; kill it if it never does."""
        child = self._child
        if child is None:
            raise BrokerError(f"no broker process was launched in {self.home}")
        started_at = time.monotonic()
        admin = admin_client(self.bootstrap_servers, self.client_config())
        while True:
            code = child.poll()
            if code is not None:
                self._pid_file.unlink(missing_ok=True)
                raise BrokerStartError(
                    f"the Kafka {self.version} broker in {self.home} exited with code {code} "
                    f"during start-up. Last log lines:\n{self.log_tail()}"
                )
            if probe(admin, self.bootstrap_servers, 1.0) is not None:
                break
            if time.monotonic() - started_at >= timeout:
                self.kill()
                raise BrokerStartError(
                    f"the Kafka {self.version} broker in {self.home} did not answer at "
                    f"{self.bootstrap_servers} within {timeout:.0f} s and was killed. "
                    f"Last log lines:\n{self.log_tail()}"
                )
        return BrokerStatus(
            running=True,
            pid=child.pid,
            bootstrap_servers=self.bootstrap_servers,
            version=self.version,
            log_file=self.log_file,
            started=True,
        )

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM the broker's process group, SIGKILL after ``timeout``; True if one ran."""
        pid = self._running_pid()
        if pid is None:
            self._forget(None)
            return False
        proc.signal_group(pid, signal.SIGTERM)
        if not proc.wait_gone(pid, timeout, self._child):
            _log.warning("broker pid %s ignored SIGTERM for %.0f s; killing it", pid, timeout)
            self._kill_pid(pid)
        self._forget(pid)
        return True

    def kill(self) -> None:
        """SIGKILL the broker now (crash simulation); the data directory is kept as it is."""
        pid = self._running_pid()
        if pid is not None:
            self._kill_pid(pid)
        self._forget(pid)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker log, plus the JVM's own output if any."""
        parts = []
        for path in (self.log_file, self.home / "logs" / "stdout.log"):
            try:
                with path.open(errors="replace") as handle:
                    tail = "".join(deque(handle, maxlen=lines)).rstrip()
            except FileNotFoundError:
                continue
            if tail:
                parts.append(f"--- {path} ---\n{tail}")
        return "\n".join(parts) if parts else f"(no log written yet under {self.home / 'logs'})"

    def _kill_pid(self, pid: int) -> None:
        proc.signal_group(pid, signal.SIGKILL)
        if not proc.wait_gone(pid, 10.0, self._child):
            raise BrokerError(f"broker pid {pid} survived SIGKILL for 10 s; check `ps -p {pid}`")

    def _forget(self, pid: int | None) -> None:
        self._pid_file.unlink(missing_ok=True)
        if self._child is not None and (pid is None or self._child.pid == pid):
            self._child.poll()
            self._child = None

    def _check_ports(self) -> None:
        for port, role in ((self.port, "broker"), (self.controller_port, "controller")):
            if not proc.port_free(port):
                holder = proc.port_holder(port) or "another process"
                raise PortInUseError(
                    f"cannot start the local Kafka {role} on 127.0.0.1:{port}: the port is "
                    f"taken by {holder}, not by the broker of {self.home}. Stop that process "
                    "or choose other ports (--port/--controller-port, "
                    "LocalKafka(port=..., controller_port=...))"
                )

    def _write_config(self) -> None:
        for sub in ("config", "logs", "data"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self._config.write_text(
            files.server_properties(
                self.port,
                self.controller_port,
                self.data_dir,
                node_id=self.node_id,
                voters=self.voters,
                replicas=self.replicas,
                listener_lines=(
                    self.security.server_properties(self.port, self.controller_port)
                    if self.security is not None
                    else None
                ),
            )
        )
        os.chmod(self._config, 0o600)  # a secure broker's holds passwords
        (self.home / "config" / "log4j2.properties").write_text(files.log4j2_properties())
        # One start per log file, so the tail printed on failure belongs to this start.
        if self.log_file.exists():
            shutil.move(self.log_file, self.log_file.with_suffix(".log.1"))

    def _spawn(self, java: str, lib: Path) -> subprocess.Popen[bytes]:
        command = [
            java,
            f"-Xms{_initial_heap(self.heap)}",
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.properties'}",
            "-cp",
            str(lib / "*"),
            "kafka.Kafka",
            str(self._config),
        ]
        with (self.home / "logs" / "stdout.log").open("wb") as out:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # its own process group: stop() takes all of it down
            )
        self._child = child
        self._pid_file.write_text(f"{child.pid}\n")
        self._state_file.write_text(
            json.dumps({"pid": child.pid, "version": self.version, "port": self.port})
        )
        return child
