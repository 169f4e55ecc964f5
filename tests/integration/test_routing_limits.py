"""Routing under load and churn: a bounded owner backlog, no abandoned appends, no leaked
clients, and no retries of refusals that cannot change."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from eventsource.domain import Aggregate, Event, apply
from eventsource.errors import (
    ApplyError,
    EventTooLargeError,
    OverloadedError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG, ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import (
    GroupedKafkaEventStore,
    GroupRouter,
    KafkaEventStore,
    serve_routing,
)
from eventsource.store.port import AppendResult
from eventsource.store.routing import AppendServer, RemoteEventStore
from examples.bank.domain import Account, AccountOpened

pytestmark = pytest.mark.integration

Hold = Callable[..., Any]  # the ``hold`` fixture of conftest.py

ACCOUNT = "bank.account"
NOTE = "tests.note"


class Noted(Event):
    __namespace__ = "tests.note"
    text: str = ""
    explode: bool = False


class Note(Aggregate):
    aggregate_type = NOTE

    @apply
    def _noted(self, event: Noted) -> None:
        if event.explode:
            raise RuntimeError("handler failed")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_a_full_owner_backlog_refuses_appends_with_a_retriable_overload_error(
    kafka_settings: KafkaSettings, unique_name: str, hold: Hold
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    store = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{unique_name}.")
    with (
        store,
        AppendServer(store, settings, store.codec, max_pending=2) as server,
        RemoteEventStore(settings, store.codec, timeout=60) as client,
    ):
        writer = store.writer_for(ACCOUNT, "a-0")
        opened = [AccountOpened(owner="x")]
        with hold(writer, lambda: client.append_async(ACCOUNT, "a-0", opened, 0)) as (
            first,
            release,
        ):
            second = client.append_async(ACCOUNT, "a-1", opened, 0)
            wait_until(lambda: server.backlog.in_flight == 2, "two requests are in flight")
            refused: list[Future[AppendResult]] = [
                client.append_async(ACCOUNT, f"a-{n}", opened, 0) for n in (2, 3)
            ]
            for future in refused:
                with pytest.raises(OverloadedError, match="max_pending") as caught:
                    future.result(30)
                assert caught.value.retriable and "nothing was written" in str(caught.value)
            release()
            assert first.result(30).version == 1
        assert second.result(30).version == 1
        assert store.version(ACCOUNT, "a-2") == 0
        assert client.append(ACCOUNT, "a-2", opened, 0).version == 1  # room again


def test_an_append_whose_client_gave_up_is_dropped_before_it_reaches_the_writer(
    kafka_settings: KafkaSettings, unique_name: str, hold: Hold
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    store = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{unique_name}.")
    with (
        store,
        AppendServer(store, settings, store.codec) as server,
        RemoteEventStore(settings, store.codec, timeout=60) as patient,
        RemoteEventStore(settings, store.codec, timeout=2) as hasty,
    ):
        writer = store.writer_for(ACCOUNT, "a-0")
        opened = [AccountOpened(owner="x")]
        with hold(writer, lambda: patient.append_async(ACCOUNT, "a-0", opened, 0)) as (
            first,
            release,
        ):
            # The client's own timeout (uncertain), or, if it is first, the server's answer
            # that the request was dropped (nothing written): both at the same deadline.
            with pytest.raises((UncertainCommitError, StoreUnavailableError)):
                hasty.append(ACCOUNT, "given-up", opened, 0)
            wait_until(lambda: server.backlog.expired == 1, "the server dropped the request")
            release()
            assert first.result(30).version == 1
        assert patient.append(ACCOUNT, "a-1", opened, 0).version == 1  # the writer moved on
        assert store.version(ACCOUNT, "given-up") == 0


def test_the_router_closes_the_clients_of_members_that_left_and_bounds_the_rest(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    prefix = f"{unique_name}."

    def member(name: str) -> GroupedKafkaEventStore:
        return GroupedKafkaEventStore(
            settings,
            [Account],
            directory=tmp_path / name,
            member=name,
            partitions=2,
            topic_prefix=prefix,
        ).start()

    a = member("w-a")
    b = member("w-b")
    try:
        with serve_routing(a), serve_routing(b):
            wait_until(lambda: len(a.owned) == 1 and len(b.owned) == 1, "both own a partition")
            assert a.wait_serving(60) and b.wait_serving(60)
            ids = [f"acc-{n}" for n in range(8)]
            with (
                GroupRouter(settings, a.codec, partitions=2, topic_prefix=prefix) as router,
                GroupRouter(
                    settings, a.codec, partitions=2, topic_prefix=prefix, max_clients=1
                ) as bounded,
            ):
                for aggregate_id in ids:
                    router.append(ACCOUNT, aggregate_id, [AccountOpened(owner="x")], 0)
                    assert bounded.version(ACCOUNT, aggregate_id) == 1
                    assert len(bounded.clients.members) == 1
                assert sorted(router.clients.members) == ["w-a", "w-b"]
                with router.clients.use("w-b") as gone:
                    pass
                b.close()
                wait_until(lambda: len(a.owned) == 2, "w-a owns both partitions")
                assert a.wait_serving(60)
                time.sleep(2.1)  # the pool prunes at most every 2 s
                for aggregate_id in ids:
                    assert router.version(ACCOUNT, aggregate_id) == 1
                assert router.clients.members == ["w-a"]
                with pytest.raises(StoreUnavailableError, match="not started"):
                    gone.version(ACCOUNT, ids[0])  # closed when it was dropped
    finally:
        b.close()
        a.close()


def test_the_router_does_not_retry_refusals_that_cannot_change(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    prefix = f"{unique_name}."
    small = {**EVENTS_TOPIC_CONFIG, "max.message.bytes": "100000"}
    ensure_topic(settings, f"{prefix}{NOTE}.events", 1, config=small)
    store = GroupedKafkaEventStore(
        settings, [Note], directory=tmp_path, member="solo", partitions=1, topic_prefix=prefix
    ).start()
    try:
        with serve_routing(store):
            wait_until(lambda: len(store.owned) == 1, "the member owns the partition")
            assert store.wait_serving(60)
            with GroupRouter(
                settings, store.codec, partitions=1, topic_prefix=prefix, retry_for=120
            ) as router:
                with pytest.raises(ApplyError, match="nothing was written"):
                    router.append(NOTE, "n-1", [Noted(explode=True)], 0)
                with pytest.raises(EventTooLargeError, match="over the 100000 bytes"):
                    router.append(NOTE, "n-1", [Noted(text="x" * 200_000)], 0)
                assert router.append(NOTE, "n-1", [Noted(text="fits")], 0).version == 1
    finally:
        store.close()
