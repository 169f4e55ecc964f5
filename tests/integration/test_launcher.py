"""The local Kafka launcher: a real broker on its own ports, started and stopped for real.

One broker start serves the lifecycle tests of this module (each start costs seconds);
the error paths need no broker at all.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsource.errors import BrokerError, ConfigurationError, MissingToolError, PortInUseError
from eventsource.kafka import broker_files
from eventsource.kafka.broker_process import free_port, pid_alive, port_free
from eventsource.kafka.launcher import LocalKafka, ensure_jars, wait_for_broker


def processes_using(home: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``home`` (the broker's files)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(home).encode() in command and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``eventsource dev kafka ...`` in its own process, as ``make kafka-up`` runs it."""
    command = [sys.executable, "-m", "eventsource.cli.app", "dev", "kafka", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def cluster_id(kafka: LocalKafka) -> str:
    meta = (kafka.data_dir / "meta.properties").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in meta if line.startswith("cluster.id="))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka(
        home=tmp_path_factory.mktemp("launcher") / "kafka",
        port=free_port(),
        controller_port=free_port(),
        heap="512m",
    )
    status = kafka.start()
    assert status.started and status.running
    yield kafka
    kafka.stop()
    assert processes_using(kafka.home) == []


@pytest.mark.integration
class TestRunningBroker:
    def test_a_started_broker_answers_at_its_bootstrap_address(self, broker: LocalKafka) -> None:
        info = wait_for_broker(broker.bootstrap_servers, timeout=10)

        assert info.brokers == 1
        assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
        assert broker.status().version == "4.1.1"

    def test_starting_again_reports_the_running_broker_instead_of_failing(
        self, broker: LocalKafka
    ) -> None:
        running = broker.status()

        again = LocalKafka(broker.home, broker.port, broker.controller_port).start()

        assert again.running and not again.started
        assert again.pid == running.pid

    def test_cli_start_twice_says_already_running_and_exits_0(self, broker: LocalKafka) -> None:
        done = cli("start", *self.where(broker))

        assert done.returncode == 0, done.stderr
        assert f"already running at {broker.bootstrap_servers}" in done.stdout
        assert "4.1.1" in done.stdout

    def test_cli_status_json_describes_the_running_broker(self, broker: LocalKafka) -> None:
        done = cli("status", "--json", *self.where(broker))

        status = json.loads(done.stdout)
        assert status["running"] is True
        assert status["pid"] == broker.status().pid
        assert status["bootstrap_servers"] == broker.bootstrap_servers
        assert status["log_file"] == str(broker.log_file)

    def test_another_home_on_the_same_port_gets_port_in_use(
        self, broker: LocalKafka, tmp_path: Path
    ) -> None:
        intruder = LocalKafka(tmp_path / "other", broker.port, free_port())

        with pytest.raises(PortInUseError, match=f"127.0.0.1:{broker.port}"):
            intruder.start()
        assert not (tmp_path / "other" / "broker.pid").exists()

    def test_the_log_tail_shows_the_broker_log(self, broker: LocalKafka) -> None:
        tail = broker.log_tail(lines=40)

        assert str(broker.log_file) in tail
        assert len(tail.splitlines()) >= 10

    def test_after_a_kill_start_reuses_the_data_and_stop_leaves_no_process(
        self, broker: LocalKafka
    ) -> None:
        before = cluster_id(broker)
        killed_pid = broker.status().pid
        assert killed_pid is not None

        broker.kill()
        assert not pid_alive(killed_pid)
        restarted = cli("start", *self.where(broker))
        assert restarted.returncode == 0, restarted.stderr
        assert f"started at {broker.bootstrap_servers}" in restarted.stdout
        new_pid = broker.status().pid
        assert new_pid is not None and new_pid != killed_pid
        assert cluster_id(broker) == before  # not reformatted
        wait_for_broker(broker.bootstrap_servers, timeout=30)
        stopped = cli("stop", *self.where(broker))

        assert stopped.returncode == 0, stopped.stderr
        assert f"(pid {new_pid})" in stopped.stdout
        assert not pid_alive(new_pid)
        assert processes_using(broker.home) == []
        assert port_free(broker.port) and port_free(broker.controller_port)
        assert broker.status().running is False
        assert broker.stop() is False

    @staticmethod
    def where(broker: LocalKafka) -> list[str]:
        return [
            *("--port", str(broker.port)),
            *("--controller-port", str(broker.controller_port)),
            *("--home", str(broker.home)),
        ]


def test_a_port_held_by_another_process_raises_port_in_use_naming_it(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        with pytest.raises(PortInUseError) as raised:
            LocalKafka(tmp_path, port=port, controller_port=free_port()).start()

    assert f"127.0.0.1:{port}" in str(raised.value)
    assert f"pid {os.getpid()}" in str(raised.value)


def test_missing_java_raises_missing_tool_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(MissingToolError, match="'java' was not found"):
        LocalKafka(tmp_path / "home", port=free_port(), controller_port=free_port()).start()


def test_missing_maven_raises_missing_tool_error_when_jars_are_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(MissingToolError, match="'mvn' was not found"):
        ensure_jars("4.1.1", cache_dir=tmp_path / "cache")


def test_cached_jars_are_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = ensure_jars("4.1.1")  # fetched (or already cached) with Maven
    monkeypatch.setenv("PATH", str(tmp_path))

    assert ensure_jars("4.1.1") == lib
    assert list(lib.glob("kafka_2.13-4.1.1.jar"))


@pytest.mark.timeout(60)
def test_waiting_for_an_unreachable_broker_raises_a_clear_error() -> None:
    address = f"127.0.0.1:{free_port()}"

    with pytest.raises(BrokerError, match=f"no Kafka broker answered at {address}") as raised:
        wait_for_broker(address, timeout=2)
    assert raised.value.retriable


@pytest.mark.timeout(120)
def test_a_test_session_with_an_unreachable_broker_fails_fast_saying_so(tmp_path: Path) -> None:
    (tmp_path / "test_needs_kafka.py").write_text(
        textwrap.dedent(
            """
            def test_one(bootstrap_servers):
                pass

            def test_two(bootstrap_servers):
                pass
            """
        )
    )
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "EVENTSOURCE_BOOTSTRAP_SERVERS": address,
        "EVENTSOURCE_TEST_BROKER_TIMEOUT": "2",
    }
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)]

    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100, check=False
    )

    assert done.returncode != 0
    assert f"no Kafka broker answered at {address}" in done.stdout
    assert "1 error" in done.stdout  # the session stopped instead of retrying for each test


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port 0 is not a TCP port"),
        ({"controller_port": 70000}, "controller_port 70000 is not a TCP port"),
        ({"port": 19500, "controller_port": 19500}, "both 19500"),
        ({"heap": "lots"}, "heap 'lots'"),
    ],
)
def test_bad_launcher_settings_are_rejected_before_anything_runs(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LocalKafka(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_the_broker_config_makes_a_single_node_usable_for_transactions(tmp_path: Path) -> None:
    properties = broker_files.server_properties(19092, 19093, tmp_path)

    for setting in (
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        f"log.dirs={tmp_path}",
    ):
        assert setting in properties.splitlines()


def test_cluster_ids_look_like_kafkas_and_never_start_with_a_dash() -> None:
    ids = {broker_files.new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


@pytest.mark.parametrize(("heap", "initial"), [("1g", "256m"), ("512m", "256m"), ("128m", "128m")])
def test_a_heap_below_256m_lowers_the_initial_heap_too(heap: str, initial: str) -> None:
    from eventsource.kafka.launcher import _initial_heap

    assert _initial_heap(heap) == initial  # the JVM refuses -Xms above -Xmx
