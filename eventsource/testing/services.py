"""Run a command with a real Kafka broker and PostgreSQL, starting whichever is missing.

``python -m eventsource.testing.services run -- pytest tests`` is what ``make test``,
``make chaos`` and ``make bench`` use:

- Kafka: ``EVENTSOURCE_BOOTSTRAP_SERVERS`` when set, else a :class:`LocalKafka` in a fresh
  temporary home on a dedicated port (``EVENTSOURCE_TEST_KAFKA_PORT``, default 29092, and
  the next one for the controller; free ports when those are taken), so it never collides
  with a developer's ``make kafka-up`` broker on 9092.
- PostgreSQL: ``EVENTSOURCE_TEST_POSTGRES_URL`` when set, else a throwaway server.

Both variables are exported to the command. Whatever was started is stopped afterwards,
also on failure, Ctrl-C or SIGTERM, and the exit code is the command's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from eventsource.errors import EventSourceError
from eventsource.kafka.broker_process import free_port, port_free
from eventsource.kafka.launcher import LocalKafka
from eventsource.testing.plugin import ENV_BOOTSTRAP, ENV_BROKER_INFO, ENV_POSTGRES, redact_url
from eventsource.testing.postgres import ThrowawayPostgres

DEFAULT_TEST_PORT = 29092


def _say(message: str) -> None:
    print(f"[services] {message}", flush=True)


class _Terminated(Exception):
    """SIGTERM arrived; unwind so that the services are stopped."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
    raise _Terminated


def _test_ports() -> tuple[int, int]:
    port = int(os.environ.get("EVENTSOURCE_TEST_KAFKA_PORT", DEFAULT_TEST_PORT))
    if port_free(port) and port_free(port + 1):
        return port, port + 1
    ports = free_port(), free_port()
    _say(f"ports {port}/{port + 1} are taken; using {ports[0]}/{ports[1]} instead")
    return ports


def start_kafka(stack: ExitStack) -> tuple[str, str]:
    """Start a fresh local broker for this run; return (bootstrap, description)."""
    home = Path(tempfile.mkdtemp(prefix="eventsource-test-kafka-"))
    stack.callback(shutil.rmtree, home, ignore_errors=True)
    port, controller_port = _test_ports()
    kafka = LocalKafka(home=home, port=port, controller_port=controller_port)
    began = time.monotonic()
    stack.callback(_stop_kafka, kafka)
    status = kafka.start()
    description = (
        f"Apache Kafka {status.version}, local launcher, pid {status.pid}, "
        f"started by eventsource.testing.services"
    )
    _say(
        f"started Apache Kafka {status.version} at {status.bootstrap_servers} "
        f"in {time.monotonic() - began:.1f} s (pid {status.pid}, log {status.log_file})"
    )
    return kafka.bootstrap_servers, description


def _stop_kafka(kafka: LocalKafka) -> None:
    pid = kafka.status().pid
    if kafka.stop():
        _say(f"stopped Apache Kafka at {kafka.bootstrap_servers} (pid {pid})")


def start_postgres(stack: ExitStack) -> str:
    """Start a throwaway PostgreSQL for this run; return its URL."""
    server = ThrowawayPostgres()
    stack.callback(_stop_postgres, server)
    began = time.monotonic()
    url = server.start()
    _say(f"started {server.description} at {url} in {time.monotonic() - began:.1f} s")
    return url


def _stop_postgres(server: ThrowawayPostgres) -> None:
    url = server.url
    server.stop()
    if url is not None:
        _say(f"stopped PostgreSQL at {url}")


def _run_child(command: Sequence[str], env: dict[str, str]) -> int:
    child = subprocess.Popen(list(command), env=env)
    try:
        return child.wait()
    except (KeyboardInterrupt, _Terminated):
        # The child usually got the terminal's SIGINT too; give it time to finish its teardown.
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise


def run(command: Sequence[str]) -> int:
    """Start missing services, run ``command`` with their addresses, stop them; exit code."""
    env = dict(os.environ)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with ExitStack() as stack:
            if env.get(ENV_BOOTSTRAP):
                _say(f"using the broker at {env[ENV_BOOTSTRAP]} ({ENV_BOOTSTRAP})")
            else:
                env[ENV_BOOTSTRAP], env[ENV_BROKER_INFO] = start_kafka(stack)
            if env.get(ENV_POSTGRES):
                _say(f"using PostgreSQL at {redact_url(env[ENV_POSTGRES])} ({ENV_POSTGRES})")
            else:
                env[ENV_POSTGRES] = start_postgres(stack)
            _say(f"running: {' '.join(command)}")
            code = _run_child(command, env)
            _say(f"command exited with code {code}")
            return code
    except EventSourceError as exc:
        _say(f"error: {exc}")
        return 1
    except (KeyboardInterrupt, _Terminated):
        _say("interrupted; services stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eventsource.testing.services run -- <command...>``."""
    parser = argparse.ArgumentParser(
        prog="python -m eventsource.testing.services",
        description="Run a command with a real Kafka broker and PostgreSQL (started if missing).",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="start what is missing, run the command, stop")
    run_parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command given: run -- <command...>")
    return run(command)


if __name__ == "__main__":
    sys.exit(main())
