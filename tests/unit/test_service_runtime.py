"""Supervisor, metrics listener and HTTP probes, driven by fake runners (no I/O but HTTP)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from eventsource.errors import BadMagicError, ConfigurationError, ProjectionStoppedError
from eventsource.service.health import HealthServer
from eventsource.service.logs import configure_logging, get_logger, reset_logging
from eventsource.service.metrics import MetricsListener, ServiceMetrics
from eventsource.service.supervisor import ExitCode, Supervisor, Unit

LOG = structlog.get_logger("test")


@dataclass
class Row:
    topic: str
    partition: int
    lag: int


class FakeRunner:
    """Behaves like ProjectionRunner.run: reports to its listener until stop is set."""

    def __init__(self, listener: MetricsListener, fail_with: BaseException | None = None) -> None:
        self.listener = listener
        self.fail_with = fail_with
        self.drained = False
        self.closed = False

    def run(self, stop: threading.Event | None = None) -> None:
        assert stop is not None
        self.listener.on_assigned([Row("t", 0, 0)])
        if self.fail_with is not None:
            raise self.fail_with
        self.listener.on_batch(10, 0.01)
        self.listener.on_caught_up()
        stop.wait()
        self.drained = True

    def status(self) -> Sequence[Row]:
        return [Row("t", 0, 7)]

    def close(self) -> None:
        self.closed = True


def unit(name: str, metrics: ServiceMetrics, make: Callable[[MetricsListener], FakeRunner]) -> Unit:
    return Unit(name, make, MetricsListener(metrics, name))


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)  # type: ignore[no-any-return]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        done.wait(0.02)
    raise AssertionError("condition not reached")


def test_stop_drains_every_runner_and_exits_zero() -> None:
    metrics = ServiceMetrics()
    runners: list[FakeRunner] = []

    def make(listener: MetricsListener) -> FakeRunner:
        runners.append(FakeRunner(listener))
        return runners[-1]

    sup = Supervisor(
        [unit("a", metrics, make), unit("b", metrics, make)], drain_timeout_s=5, log=LOG
    )
    sup.start()
    wait_until(lambda: sup.readiness()[0])
    sup.request_stop("test")
    assert sup.wait() == ExitCode.OK
    assert [r.drained and r.closed for r in runners] == [True, True]
    assert sample(metrics, "eventsource_events_processed_total", projection="a") == 10


def test_readiness_requires_assignment_and_no_outstanding_error() -> None:
    listener = MetricsListener(ServiceMetrics(), "p")
    assert not listener.state.ready
    listener.on_assigned([Row("t", 0, 0)])
    assert listener.state.ready and not listener.state.caught_up
    listener.on_error(RuntimeError("database went away"))
    assert not listener.state.ready
    listener.on_batch(1, 0.001)
    assert listener.state.ready
    listener.on_caught_up()
    assert listener.state.as_dict()["caught_up"] is True


def test_failed_runner_is_recreated_after_backoff() -> None:
    metrics = ServiceMetrics()
    attempts: list[FakeRunner] = []

    def make(listener: MetricsListener) -> FakeRunner:
        error = OSError("database is down") if len(attempts) < 2 else None
        attempts.append(FakeRunner(listener, fail_with=error))
        return attempts[-1]

    sup = Supervisor([unit("p", metrics, make)], drain_timeout_s=5, log=LOG, backoff_s=(0.01, 0.05))
    sup.start()
    wait_until(lambda: len(attempts) == 3 and sup.readiness()[0])
    sup.request_stop("test")
    assert sup.wait() == ExitCode.OK
    assert sample(metrics, "eventsource_runner_errors_total", projection="p") == 2
    assert all(r.closed for r in attempts)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProjectionStoppedError("poison at t[0]@3"), ExitCode.POISON),
        (ConfigurationError("bad table name"), ExitCode.USAGE),
    ],
)
def test_poison_stop_and_configuration_errors_end_the_service_with_their_code(
    error: Exception, code: ExitCode
) -> None:
    metrics = ServiceMetrics()
    healthy: list[FakeRunner] = []

    def good(listener: MetricsListener) -> FakeRunner:
        healthy.append(FakeRunner(listener))
        return healthy[-1]

    def bad(listener: MetricsListener) -> FakeRunner:
        wait_until(lambda: bool(healthy))  # fail while the other projection is running
        return FakeRunner(listener, fail_with=error)

    sup = Supervisor(
        [unit("bad", metrics, bad), unit("ok", metrics, good)],
        drain_timeout_s=5,
        log=LOG,
    )
    sup.start()
    assert sup.wait() == code
    assert healthy[0].drained


def test_a_runner_that_ignores_stop_makes_the_exit_code_a_failure_after_the_bound() -> None:
    release = threading.Event()

    class Stuck(FakeRunner):
        def run(self, stop: threading.Event | None = None) -> None:
            release.wait(10)

    sup = Supervisor([unit("s", ServiceMetrics(), Stuck)], drain_timeout_s=0.2, log=LOG)
    sup.start()
    sup.request_stop("test")
    assert sup.wait() == ExitCode.FAILURE
    release.set()


def test_sigterm_requests_a_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    runners: list[FakeRunner] = []

    def make(listener: MetricsListener) -> FakeRunner:
        runners.append(FakeRunner(listener))
        return runners[-1]

    sup = Supervisor([unit("p", ServiceMetrics(), make)], drain_timeout_s=5, log=LOG)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    assert sup.run() == ExitCode.OK
    assert runners[0].drained
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM)
    )


def test_lag_poller_sets_lag_gauges_from_runner_status() -> None:
    metrics = ServiceMetrics()
    sup = Supervisor(
        [unit("p", metrics, FakeRunner)], drain_timeout_s=5, log=LOG, lag_interval_s=0.05
    )
    sup.start()
    wait_until(
        lambda: sample(metrics, "eventsource_lag", projection="p", topic="t", partition="0") == 7
    )
    sup.request_stop("test")
    assert sup.wait() == ExitCode.OK


def test_dead_letters_and_rebalances_are_counted() -> None:
    metrics = ServiceMetrics()
    listener = MetricsListener(metrics, "p")
    listener.on_assigned([Row("t", 0, 0), Row("t", 1, 0)])
    listener.on_revoked([Row("t", 1, 0)])
    listener.on_dead_letter("decode", ValueError("bad magic"))
    assert sample(metrics, "eventsource_rebalances_total", projection="p", kind="assigned") == 1
    assert sample(metrics, "eventsource_rebalances_total", projection="p", kind="revoked") == 1
    assert sample(metrics, "eventsource_dead_letters_total", projection="p", stage="decode") == 1
    assert listener.state.partitions == 1


@pytest.fixture
def probes() -> Iterator[tuple[HealthServer, dict[str, Any]]]:
    state: dict[str, Any] = {"ready": False}
    metrics = ServiceMetrics()
    metrics.events.labels("p").inc(5)
    server = HealthServer(
        lambda: (state["ready"], {"p": {"ready": state["ready"]}}),
        metrics.registry,
        host="127.0.0.1",
        port=0,
    ).start()
    yield server, state
    server.close(5.0)


def get(server: HealthServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_probes_answer_alive_ready_and_metrics(probes: tuple[HealthServer, dict[str, Any]]) -> None:
    server, state = probes
    assert get(server, "/healthz")[0] == 200
    status, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["projections"] == {"p": {"ready": False}}
    state["ready"] = True
    assert get(server, "/readyz")[0] == 200
    status, body = get(server, "/metrics")
    assert 'eventsource_events_processed_total{projection="p"} 5.0' in body
    assert get(server, "/nope")[0] == 404


def test_a_taken_port_is_a_configuration_error(
    probes: tuple[HealthServer, dict[str, Any]],
) -> None:
    server, _ = probes
    with pytest.raises(ConfigurationError, match="--http-port"):
        HealthServer(
            lambda: (True, {}), ServiceMetrics().registry, host="127.0.0.1", port=server.port
        )


def test_an_error_the_runner_already_reported_is_counted_once() -> None:
    metrics = ServiceMetrics()
    attempts: list[FakeRunner] = []

    class Reporting(FakeRunner):
        def run(self, stop: threading.Event | None = None) -> None:
            if len(attempts) == 1:
                error = OSError("database is down")
                self.listener.on_error(error)
                raise error
            super().run(stop)

    def make(listener: MetricsListener) -> FakeRunner:
        attempts.append(Reporting(listener))
        return attempts[-1]

    sup = Supervisor([unit("p", metrics, make)], drain_timeout_s=5, log=LOG, backoff_s=(0.01, 0.05))
    sup.start()
    wait_until(lambda: len(attempts) == 2 and sup.readiness()[0])
    sup.request_stop("test")
    assert sup.wait() == ExitCode.OK
    assert sample(metrics, "eventsource_runner_errors_total", projection="p") == 1


def test_log_lines_of_a_runner_thread_carry_projection_and_record_position() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:

        class Poisoned(FakeRunner):
            def run(self, stop: threading.Event | None = None) -> None:
                logging.getLogger("eventsource.projection.runner").warning("plain stdlib line")
                self.listener.on_dead_letter("decode", BadMagicError("not avro").at("t", 2, 41))
                super().run(stop)

        metrics = ServiceMetrics()
        listener = MetricsListener(metrics, "p", get_logger("eventsource.service"))
        sup = Supervisor([Unit("p", Poisoned, listener)], drain_timeout_s=5, log=get_logger())
        sup.start()
        wait_until(lambda: sup.readiness()[0])
        sup.request_stop("test")
        assert sup.wait() == ExitCode.OK
    finally:
        reset_logging()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    plain = next(r for r in lines if r["event"] == "plain stdlib line")
    assert plain["projection"] == "p"
    poison = next(r for r in lines if r["event"] == "poison record")
    assert (poison["topic"], poison["partition"], poison["offset"]) == ("t", 2, 41)
    assert poison["stage"] == "decode"
