"""librdkafka's log lines: re-levelled, rate-limited per kind, and given to every client."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from eventsource.kafka.client_logs import CLIENT_LOG, ClientLog, classify, with_client_log
from eventsource.kafka.config import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
REFUSED = (
    "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 "
    "failed: Connection refused (after 0ms in state CONNECT)"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def emit(log: ClientLog, level: int, facility: str, text: str) -> None:
    # Exactly how confluent-kafka calls the configured logger.
    log.log(level, "%s [%s] %s", facility, "rdkafka#producer-1", text)


@pytest.mark.parametrize(
    ("level", "facility", "text", "expected"),
    [
        (logging.ERROR, "FAIL", REFUSED, (logging.WARNING, "broker-unreachable")),
        (logging.ERROR, "FAIL", "1/1 brokers are down", (logging.WARNING, "broker-unreachable")),
        (
            logging.WARNING,
            "GETPID",
            "Failed to acquire transactional PID: Coordinator load in progress: retrying",
            (logging.DEBUG, "coordinator-loading"),
        ),
        (logging.INFO, "BGQUEUE", "Purging 3 messages", (logging.DEBUG, "purging")),
        (
            logging.INFO,
            "FAIL",
            "localhost:9092/1: Disconnected (after 600000ms in state UP)",
            (logging.INFO, "disconnected"),
        ),
        (
            logging.ERROR,
            "FAIL",
            "SASL authentication error: Authentication failed during authentication",
            (logging.ERROR, "authentication"),
        ),
        (logging.CRITICAL, "FATAL", "Fatal error: fenced", (logging.CRITICAL, "fatal")),
    ],
)
def test_each_kind_of_line_gets_the_level_it_deserves(
    level: int, facility: str, text: str, expected: tuple[int, str]
) -> None:
    assert classify(level, facility, text) == expected


def test_an_outage_gives_one_line_per_kind_and_window_then_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    target = logging.getLogger("tests.client_logs.outage")
    log = ClientLog(target, window=30.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger=target.name):
        for _ in range(600):  # 30 s of a broker down, as librdkafka reports it
            emit(log, logging.ERROR, "FAIL", REFUSED)
            clock.now += 0.049
        clock.now += 1.0
        emit(log, logging.ERROR, "FAIL", REFUSED)  # the first line of the next window

    lines = [r for r in caplog.records if r.name == target.name]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.WARNING]
    assert lines[0].getMessage() == (
        "kafka client rdkafka#producer-1 FAIL: 127.0.0.1:9/bootstrap: Connect to "
        "ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)"
    )
    assert lines[1].getMessage().endswith("(599 more like this in the last 30 s not shown)")
    assert lines[1].suppressed == 599  # type: ignore[attr-defined]


def test_kinds_are_limited_separately(caplog: pytest.LogCaptureFixture) -> None:
    target = logging.getLogger("tests.client_logs.kinds")
    log = ClientLog(target, window=30.0, clock=Clock())
    with caplog.at_level(logging.DEBUG, logger=target.name):
        for _ in range(5):
            emit(log, logging.ERROR, "FAIL", REFUSED)
            emit(log, logging.ERROR, "FAIL", "SASL authentication error")
    assert [r.kafka_kind for r in caplog.records] == [  # type: ignore[attr-defined]
        "broker-unreachable",
        "authentication",
    ]


def test_lines_below_the_target_level_cost_no_rate_budget(caplog: pytest.LogCaptureFixture) -> None:
    target = logging.getLogger("tests.client_logs.quiet")
    log = ClientLog(target, window=30.0, clock=Clock())
    target.setLevel(logging.ERROR)
    try:
        emit(log, logging.ERROR, "FAIL", REFUSED)  # a warning now: not shown, not counted
        target.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG, logger=target.name):
            emit(log, logging.ERROR, "FAIL", REFUSED)
    finally:
        target.setLevel(logging.NOTSET)
    assert len(caplog.records) == 1
    assert "not shown" not in caplog.records[0].getMessage()


def test_every_settings_config_routes_client_logs() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    for config in (
        settings.producer_config(),
        settings.transactional_producer_config("t"),
        settings.consumer_config("g"),
        settings.admin_config(),
    ):
        assert config["logger"] is CLIENT_LOG
    assert with_client_log({"logger": "mine"})["logger"] == "mine"


def test_admin_clients_which_nobody_polls_keep_only_critical_lines() -> None:
    assert KafkaSettings().admin_config()["log_level"] == 2
    assert KafkaSettings(kafka_extra={"log_level": "7"}).admin_config()["log_level"] == "7"
    assert "log_level" not in KafkaSettings().consumer_config("g")


CLIENT_CLASSES = frozenset({"Producer", "Consumer", "AdminClient"})


def client_calls_without_routed_config(*folders: str) -> list[str]:
    """``Producer(...)``/``Consumer(...)``/``AdminClient(...)`` calls under ``folders`` whose
    configuration does not come from KafkaSettings' *_config methods or with_client_log:
    librdkafka would print their lines to stderr itself (``%3|...|FAIL|...``)."""
    unrouted = []
    for path in sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {  # self._config = settings.consumer_config(...) and the like
            ast.unparse(node.targets[0]): ast.unparse(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and len(node.targets) == 1
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in CLIENT_CLASSES:
                continue
            source = ast.unparse(node.args[0])
            source = assigned.get(source, source)
            if not any(f in source for f in ("_config(", "with_client_log(", "admin_log_config(")):
                unrouted.append(f"{path.relative_to(ROOT)}:{node.lineno}: {source}")
    return unrouted


def test_every_client_in_the_package_gets_its_config_through_the_client_log() -> None:
    assert client_calls_without_routed_config("eventsource") == []


def test_every_client_of_the_tests_benchmarks_and_examples_is_routed_too() -> None:
    # Their raw lines would reach the test run's stderr during every broker kill.
    assert client_calls_without_routed_config("tests", "benchmarks", "examples") == []


def test_a_routed_admin_client_prints_nothing_while_no_broker_answers() -> None:
    # What the pytest plugin's create_topic and the cluster helpers build: nothing polls
    # them, and librdkafka must not fall back to writing its own lines to stderr.
    script = (
        "from confluent_kafka.admin import AdminClient\n"
        "from eventsource.kafka.client_logs import admin_log_config\n"
        "admin = AdminClient(admin_log_config({'bootstrap.servers': '127.0.0.1:9'}))\n"
        "try:\n"
        "    admin.list_topics(timeout=1)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "KafkaException"  # it did try, and failed
    assert result.stderr == ""


def test_the_producer_close_warning_of_confluent_kafka_is_not_printed() -> None:
    # confluent-kafka's Producer.close() warns when aborting the open transaction fails
    # (broker down, producer fenced); the writer that dropped the producer said why already.
    script = (
        "import warnings, eventsource.kafka.config\n"
        "warnings.warn('Producer abort_transaction failed during close: KafkaError{...}',"
        " RuntimeWarning)\n"
        "warnings.warn('something else', RuntimeWarning)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "abort_transaction" not in result.stderr
    assert "something else" in result.stderr  # only that one warning is silenced
