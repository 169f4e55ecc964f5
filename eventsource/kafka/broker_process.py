"""Process and port facts the launcher relies on (Linux ``/proc``), kept apart from policy."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie that nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the JVM, allow binding over TIME_WAIT leftovers of a broker that just stopped.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_holder(port: int) -> str | None:
    """Best effort: ``"pid 123 (java ...)"`` of the process listening on ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        if _socket_links(proc) & inodes:
            command = " ".join(cmdline(int(proc.name)))[:120]
            return f"pid {proc.name} ({command})"
    return None


def _socket_links(proc: Path) -> set[str]:
    links: set[str] = set()
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:  # gone, or not ours to look at
        return links
    for fd in fds:
        with contextlib.suppress(OSError):  # closed while we looked
            links.add(os.readlink(fd))
    return links


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid`` (the broker runs in its own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # not a group leader we own: fall back to the process itself
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pid: int, timeout: float, child: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until ``pid`` has exited (reaping it when it is our child); True if it did."""
    if child is not None and child.pid == pid:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
