"""How long a projector restarted after SIGKILL waits for its partitions, per group setting.

Run as a script (``python benchmarks/projector_takeover.py``) against the broker in
``EVENTSOURCE_BOOTSTRAP_SERVERS`` (default 127.0.0.1:9092). Each option: a member process
(the runner's consumer settings: read_committed, no auto commit, eager assignment) joins a
fresh group on a 3-partition topic and is killed with SIGKILL once assigned; a replacement
with the same settings starts at once, and the time from its start to its assignment is
the takeover time. Numbers are reported, never asserted; prints a markdown table.

Options measured:

- ``classic``: librdkafka defaults (``session.timeout.ms`` 45 s): the dead member keeps
  its partitions until its session expires;
- ``session-10s``: ``session.timeout.ms=10000``;
- ``static``: ``group.instance.id`` from a stable identity: the replacement takes the dead
  member's place without waiting for its session;
- ``consumer-protocol``: ``group.protocol=consumer`` (KIP-848, Kafka 4.x);
- ``consumer-protocol+static``: KIP-848 with ``group.instance.id``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings

OPTIONS: dict[str, dict[str, str]] = {
    "classic": {},
    "session-10s": {"session.timeout.ms": "10000"},
    "static": {"group.instance.id": "projector-0"},
    "consumer-protocol": {"group.protocol": "consumer"},
    "consumer-protocol+static": {"group.protocol": "consumer", "group.instance.id": "projector-0"},
}

MEMBER = r"""
import json, sys, time
from confluent_kafka import Consumer
config = json.loads(sys.argv[1])
started = time.monotonic()
consumer = Consumer(config)
def assigned(c, parts):
    print(json.dumps({"assigned": len(parts), "after_s": time.monotonic() - started}), flush=True)
consumer.subscribe([sys.argv[2]], on_assign=assigned)
while True:
    consumer.poll(0.2)
"""


def member(config: dict[str, str], topic: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", MEMBER, json.dumps(config), topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def first_assignment(proc: subprocess.Popen[str], timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        report = json.loads(line)
        if report["assigned"] > 0:
            return float(report["after_s"])
    raise RuntimeError("no assignment within the timeout")


def measure(settings: KafkaSettings, topic: str, name: str, extra: dict[str, str]) -> float:
    base = settings.consumer_config(f"bench.takeover.{name}.{uuid.uuid4().hex[:8]}")
    config = {k: str(v) for k, v in base.items() if isinstance(v, str | int | bool)}
    config.update(extra)
    first = member(config, topic)
    try:
        first_assignment(first)
        first.send_signal(signal.SIGKILL)
        first.wait()
        replacement = member(config, topic)
        try:
            return first_assignment(replacement)
        finally:
            replacement.kill()
            replacement.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def main() -> None:
    settings = KafkaSettings(
        bootstrap_servers=os.environ.get("EVENTSOURCE_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    topic = f"bench.takeover.{uuid.uuid4().hex[:8]}"
    ensure_topic(settings, topic, 3)
    print("| option | takeover after SIGKILL (s) |\n|---|---|")
    for name, extra in OPTIONS.items():
        try:
            seconds = f"{measure(settings, topic, name, extra):.1f}"
        except Exception as exc:  # an option the client or broker refuses: say so
            seconds = f"failed: {type(exc).__name__}: {exc}"
        print(f"| `{name}` | {seconds} |", flush=True)


if __name__ == "__main__":
    main()
