"""End-to-end helpers: the installed ``eventsource`` command in subprocesses, real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
EVENTSOURCE = Path(sys.executable).parent / "eventsource"
BALANCES = "examples.bank.projections:AccountBalances"
ACCOUNT = "examples.bank.domain:Account"


def cli_env(bootstrap_servers: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env.update(EVENTSOURCE_BOOTSTRAP_SERVERS=bootstrap_servers, PYTHONPATH=str(REPO), **extra)
    return env


@dataclass
class Cli:
    """Runs ``eventsource ...`` to completion."""

    bootstrap_servers: str
    cwd: Path

    def __call__(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(EVENTSOURCE), *args],
            cwd=self.cwd,
            env=cli_env(self.bootstrap_servers, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def all(self, *commands: Sequence[str], **env: str) -> list[subprocess.CompletedProcess[str]]:
        """Several independent commands side by side (each spends most of its time starting
        up or waiting on a broker or a timeout); their results in order."""
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda args: self(*args, **env), commands))

    def json(self, *args: str, **env: str) -> Any:
        return parsed(self(*args, "--json", **env))


def parsed(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a ``--json`` command printed, once it succeeded."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def pname() -> str:
    """A unique projection name short enough for its table names."""
    return f"e2e_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cli(bootstrap_servers: str, tmp_path: Path) -> Cli:
    return Cli(bootstrap_servers, tmp_path)


class Service:
    """A background ``eventsource run``; its JSON log lines land in ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(EVENTSOURCE), "run", *args, "--http-port", "0", "--http-host", "127.0.0.1"],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._port: int | None = None

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    @property
    def port(self) -> int:
        if self._port is None:
            wait_for(lambda: any(r.get("http_port") for r in self.lines()), 60, self.describe)
            self._port = next(int(r["http_port"]) for r in self.lines() if r.get("http_port"))
        return self._port

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    def readiness(self) -> dict[str, Any]:
        return json.loads(self.get("/readyz")[1])  # type: ignore[no-any-return]

    def metric(self, name: str, **labels: str) -> float:
        body = self.get("/metrics")[1]
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in body.splitlines():
            m = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
            if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
                return float(m.group(3))
        return 0.0

    def caught_up(self, projection: str) -> bool:
        try:
            detail = self.readiness()["projections"][projection]
        except (OSError, KeyError, ValueError):
            return False
        return bool(detail["caught_up"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def describe(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def services(bootstrap_servers: str, directory: Path) -> Iterator[Callable[..., Service]]:
    """``start(*args, **env) -> Service`` in ``directory``; whatever still runs is killed
    when the block ends."""
    started: list[Service] = []

    def start(*args: str, **env: str) -> Service:
        log = directory / f"service-{len(started)}.log"
        svc = Service(list(args), cli_env(bootstrap_servers, **env), directory, log)
        started.append(svc)
        return svc

    try:
        yield start
    finally:
        for svc in started:
            if svc.proc.poll() is None:
                svc.proc.kill()
                svc.proc.wait(timeout=30)
            svc._log.close()


@pytest.fixture
def service(bootstrap_servers: str, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    with services(bootstrap_servers, tmp_path) as start:
        yield start


def wait_for(
    predicate: Callable[[], bool], timeout: float, describe: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s\n{describe()}")


def read_balances(database_url: str, projection: str) -> dict[str, tuple[int, int]]:
    """account id -> (balance in cents, event count) from the projection's live view."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT account_id, balance_cents, events FROM {projection}_accounts")
            ).all()
    finally:
        engine.dispose()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def read_checkpoints(
    database_url: str, projection: str, version: int = 1
) -> dict[tuple[str, int], int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT topic, partition, next_offset FROM eventsource_checkpoints "
                    "WHERE projection = :p AND version = :v"
                ),
                {"p": projection, "v": version},
            ).all()
    finally:
        engine.dispose()
    return {(r[0], int(r[1])): int(r[2]) for r in rows}
