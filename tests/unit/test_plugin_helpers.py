"""Helpers behind the pytest plugin: names, redaction, the Docker probe, Debian binaries."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsource.testing.docker import docker_engine_answers
from eventsource.testing.plugin import redact_url, unique_name_for
from eventsource.testing.postgres import debian_postgres_bin

SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")


@pytest.mark.parametrize(
    "test_name",
    [
        "test_simple",
        "test_param[a-b/c d]",
        "Test Weird::Name!" * 10,
        "test_ünïcode[🙂]",
    ],
)
def test_unique_names_are_safe_topic_group_and_sql_identifiers(test_name: str) -> None:
    name = unique_name_for(test_name)

    assert SAFE.match(name), name
    assert len(name) <= 63  # PostgreSQL's identifier limit; Kafka allows 249


def test_unique_names_differ_between_calls_for_the_same_test() -> None:
    names = {unique_name_for("test_same") for _ in range(100)}

    assert len(names) == 100


def test_the_unique_name_fixture_starts_with_the_test_name(unique_name: str) -> None:
    assert unique_name.startswith("t_test_the_unique_name_fixture_sta")  # first 40 characters


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://app:s3cret@db:5432/app",
            "postgresql+psycopg://app:***@db:5432/app",
        ),
        ("postgresql+psycopg://postgres@127.0.0.1:5433/postgres", None),
        ("postgresql+psycopg://postgres@/postgres?host=/tmp/pg", None),
    ],
)
def test_redact_url_hides_passwords_only(url: str, shown: str | None) -> None:
    assert redact_url(url) == (shown or url)


@pytest.fixture
def fake_engine() -> Iterator[str]:
    """A TCP server that answers one request the way ``GET /_ping`` on Docker does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    thread.join(timeout=5)
    server.close()


def test_a_docker_engine_that_answers_ping_is_detected(
    fake_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", fake_engine)
    monkeypatch.delenv("EVENTSOURCE_NO_DOCKER", raising=False)

    assert docker_engine_answers() is True


def test_no_docker_engine_behind_a_closed_port_is_a_quick_no(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed}")

    assert docker_engine_answers(timeout=1.0) is False


def test_a_missing_docker_socket_is_a_no(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")

    assert docker_engine_answers() is False


def test_eventsource_no_docker_forces_the_launcher_even_when_docker_answers(
    fake_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", fake_engine)
    monkeypatch.setenv("EVENTSOURCE_NO_DOCKER", "1")

    assert docker_engine_answers() is False
    # Let the fake engine's thread finish so the fixture's join returns at once.
    with socket.create_connection(("127.0.0.1", int(fake_engine.rsplit(":", 1)[1]))) as conn:
        conn.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        conn.recv(64)


def test_debian_binaries_are_found_when_installed() -> None:
    found = debian_postgres_bin()

    if found is None:
        assert not list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    else:
        assert (found / "initdb").exists() and (found / "pg_ctl").exists()
