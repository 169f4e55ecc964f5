"""Which brokers accept connections: the probe behind a replica shortage with stale metadata."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from eventsource.kafka.replicas import answering


@pytest.fixture
def listening() -> Iterator[str]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def closed() -> str:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    return f"127.0.0.1:{port}"  # nothing listens there any more


def test_only_the_brokers_that_accept_a_connection_answer(listening: str, closed: str) -> None:
    assert answering({1: listening, 2: closed}, timeout=1.0) == {1}


def test_an_address_that_cannot_be_parsed_does_not_answer(listening: str) -> None:
    assert answering({1: "no-port-here", 2: "[::1]:x", 3: listening}, timeout=1.0) == {3}


def test_no_brokers_no_answers() -> None:
    assert answering({}, timeout=1.0) == set()
