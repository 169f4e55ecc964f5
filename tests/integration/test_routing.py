"""Routing on the real broker: appends from a non-owner go through the owner's AppendServer.

The owner's store here is the in-memory adapter (same contract as the Kafka one), so these
tests isolate the request/reply path; tests/reliability/test_append_race.py runs the same
path against KafkaEventStore in separate OS processes.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from eventsource.aio import AsyncRepository
from eventsource.codec import EventCodec
from eventsource.domain import Event
from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    DecodeError,
    FencedError,
    StoreError,
    StoreUnavailableError,
    UncertainCommitError,
    UnknownSchemaError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store.appending import AppendCall, AppenderBase, completed
from eventsource.store.memory import InMemoryEventStore
from eventsource.store.port import AppendResult
from eventsource.store.routing import AppendServer, RemoteEventStore, wire
from eventsource.store.routing.topics import partitions_at_end
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

TYPE = Account.aggregate_type
OPENED = AccountOpened(owner="ann")


@pytest.fixture(scope="module")
def codec() -> EventCodec:
    return EventCodec.for_events(Account.event_types())


@pytest.fixture(scope="module")
def settings(bootstrap_servers: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers, application_id=f"t_routing_{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="module")
def owner_store() -> Iterator[InMemoryEventStore]:
    with InMemoryEventStore() as store:
        yield store


@pytest.fixture(scope="module")
def server(
    owner_store: InMemoryEventStore, settings: KafkaSettings, codec: EventCodec
) -> Iterator[AppendServer]:
    with AppendServer(owner_store, settings, codec) as running:
        yield running


@pytest.fixture(scope="module")
def remote(
    server: AppendServer, settings: KafkaSettings, codec: EventCodec
) -> Iterator[RemoteEventStore]:
    with RemoteEventStore(settings, codec, timeout=15) as client:
        yield client


def new_id() -> str:
    return f"acc-{uuid.uuid4().hex[:8]}"


def test_an_append_through_the_owner_is_stored_and_returns_version_and_positions(
    remote: RemoteEventStore, owner_store: InMemoryEventStore
) -> None:
    account = new_id()
    deposit = MoneyDeposited(amount=Decimal("5.00"))
    result = remote.append(TYPE, account, [OPENED, deposit], 0, correlation_id="c-1")
    recorded = owner_store.recorded_events(TYPE, account)
    assert result.aggregate_id == account
    assert result.version == 2
    assert result.positions == tuple(r.position for r in recorded)
    assert [r.event for r in recorded] == [OPENED, deposit]
    assert [r.metadata.correlation_id for r in recorded] == ["c-1", "c-1"]


def test_a_stale_expected_version_raises_concurrency_error_and_writes_nothing(
    remote: RemoteEventStore, owner_store: InMemoryEventStore
) -> None:
    account = new_id()
    remote.append(TYPE, account, [OPENED], 0)
    with pytest.raises(ConcurrencyError) as raised:
        remote.append(TYPE, account, [MoneyDeposited(amount=Decimal("1"))], 0)
    assert (raised.value.aggregate_id, raised.value.expected, raised.value.actual) == (
        account,
        0,
        1,
    )
    assert owner_store.version(TYPE, account) == 1


def test_version_is_answered_by_the_owner(remote: RemoteEventStore) -> None:
    account = new_id()
    assert remote.version(TYPE, account) == 0
    remote.append(TYPE, account, [OPENED, MoneyDeposited(amount=Decimal("2"))], 0)
    assert remote.version(TYPE, account) == 2


def test_concurrent_appends_at_the_same_version_have_exactly_one_winner(
    remote: RemoteEventStore, owner_store: InMemoryEventStore
) -> None:
    account = new_id()
    futures = [remote.append_async(TYPE, account, [OPENED], 0) for _ in range(8)]
    outcomes = [f.exception() or f.result() for f in futures]
    winners = [o for o in outcomes if isinstance(o, AppendResult)]
    assert len(winners) == 1
    assert all(isinstance(o, ConcurrencyError) for o in outcomes if o not in winners)
    assert owner_store.version(TYPE, account) == 1


def test_the_last_owner_is_the_server_that_answered(
    remote: RemoteEventStore, server: AppendServer
) -> None:
    remote.version(TYPE, new_id())  # any answered request tells the client who the owner is
    assert remote.last_owner == server.server_id


def test_an_async_repository_on_a_remote_store_without_a_loader_refuses_get(
    remote: RemoteEventStore,
) -> None:
    accounts = AsyncRepository(remote, Account)  # a RemoteEventStore only appends
    with pytest.raises(ConfigurationError, match=r"loader=.*PartitionScanLoader"):
        asyncio.run(accounts.get("acc-1"))


def test_events_the_owner_cannot_decode_raise_the_codec_error_at_the_caller(
    settings: KafkaSettings, server: AppendServer
) -> None:
    class UnknownFingerprint:
        def encode(self, event: Event) -> bytes:
            return b"\xc3\x01" + b"\x00" * 8 + b"\x02"

        def decode_at(
            self, payload: bytes | None, topic: str, partition: int, offset: int
        ) -> Event:
            raise AssertionError("not used by appends")

    with (
        RemoteEventStore(settings, UnknownFingerprint(), timeout=15) as client,
        pytest.raises(UnknownSchemaError),
    ):
        client.append(TYPE, new_id(), [OPENED], 0)


def test_bad_arguments_fail_locally_before_anything_is_sent(remote: RemoteEventStore) -> None:
    with pytest.raises(ValueError, match="at least one event"):
        remote.append(TYPE, "acc-1", [], 0)
    with pytest.raises(ValueError, match="expected_version"):
        remote.append(TYPE, "acc-1", [OPENED], -5)


def test_an_unreadable_request_gets_a_decode_error_reply_and_the_server_keeps_serving(
    remote: RemoteEventStore, settings: KafkaSettings
) -> None:
    replies = Consumer(settings.consumer_config(f"{settings.application_id}.spy"))
    try:
        replies.assign(partitions_at_end(replies, remote.replies_topic))
        producer = Producer(settings.producer_config())
        producer.produce(
            remote.requests_topic,
            key=b"acc-1",
            value=b"not json",
            headers=[(wire.REQUEST_ID_HEADER, b"garbage-1")],
        )
        producer.flush(10)
        reply = _wait_for_reply(replies, "garbage-1")
        assert isinstance(reply, wire.ErrorReply)
        assert reply.error_type == "DecodeError"
        assert "is not JSON" in reply.message and remote.requests_topic in reply.message
    finally:
        replies.close()
    assert remote.append(TYPE, new_id(), [OPENED], 0).version == 1


def test_without_an_owner_an_append_times_out_as_uncertain(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    lonely = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=_app_id())
    with RemoteEventStore(lonely, codec, timeout=1.5) as client:
        with pytest.raises(UncertainCommitError, match="reload the aggregate") as raised:
            client.append(TYPE, "acc-1", [OPENED], 0)
        assert "no reply from the owner within 1.5s" in str(raised.value)
        with pytest.raises(StoreUnavailableError, match="is an AppendServer running"):
            client.version(TYPE, "acc-1")


def test_requests_sent_before_the_server_started_are_never_executed(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=_app_id())
    store = InMemoryEventStore()
    with RemoteEventStore(settings, codec, timeout=15) as client:
        early = wire.Request(
            kind="append",
            request_id="early-1",
            reply_topic=client.replies_topic,
            client="test",
            expires_at_ms=int((time.time() + 3600) * 1000),  # still wanted, but too early
            aggregate_type=TYPE,
            aggregate_id="acc-early",
            expected_version=0,
            events=(wire.EncodedEvent(OPENED.event_type(), codec.encode(OPENED)),),
        )
        producer = Producer(settings.producer_config())
        producer.produce(client.requests_topic, key=b"acc-early", value=wire.encode_request(early))
        producer.flush(10)
        with AppendServer(store, settings, codec):
            assert client.append(TYPE, "acc-later", [OPENED], 0).version == 1
            assert client.version(TYPE, "acc-early") == 0
    assert store.version(TYPE, "acc-early") == 0
    assert store.version(TYPE, "acc-later") == 1


def test_a_request_whose_client_gave_up_is_not_executed(
    remote: RemoteEventStore, owner_store: InMemoryEventStore, codec: EventCodec
) -> None:
    expired = wire.Request(
        kind="append",
        request_id="expired-1",
        reply_topic=remote.replies_topic,
        client="test",
        expires_at_ms=int(time.time() * 1000) - 1,
        aggregate_type=TYPE,
        aggregate_id="acc-expired",
        expected_version=0,
        events=(wire.EncodedEvent(OPENED.event_type(), codec.encode(OPENED)),),
    )
    producer = Producer(remote.settings.producer_config())
    producer.produce(remote.requests_topic, key=b"acc-expired", value=wire.encode_request(expired))
    producer.flush(10)
    # Same key, so same partition: once the later request is answered, the expired one
    # has been seen (and skipped).
    assert remote.version(TYPE, "acc-expired") == 0
    assert owner_store.version(TYPE, "acc-expired") == 0


def test_a_client_that_is_not_started_refuses_to_send(
    settings: KafkaSettings, codec: EventCodec
) -> None:
    with pytest.raises(StoreUnavailableError, match="call start"):
        RemoteEventStore(settings, codec).append(TYPE, "acc-1", [OPENED], 0)


class FencedStore(AppenderBase):
    """An owner whose writer was fenced by a newer owner: every append fails."""

    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        return completed(self._fail, call)

    @staticmethod
    def _fail(call: AppendCall) -> AppendResult:
        raise FencedError(
            f"partition of {call.aggregate_id!r} has a newer writer; this one stopped"
        )

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        return 0


class BrokenStore(FencedStore):
    """An owner with a bug: raises something that is not an eventsource error."""

    @staticmethod
    def _fail(call: AppendCall) -> AppendResult:
        raise RuntimeError("index out of sync")


def test_a_fenced_owner_answers_fenced_then_stops_serving(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=_app_id())
    with (
        AppendServer(FencedStore(), settings, codec) as server,
        RemoteEventStore(settings, codec, timeout=15) as client,
    ):
        with pytest.raises(FencedError, match="newer writer"):
            client.append(TYPE, "acc-1", [OPENED], 0)
        deadline = time.monotonic() + 10
        while server.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.running


def test_an_unexpected_owner_failure_is_reported_as_uncertain(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=_app_id())
    with (
        AppendServer(BrokenStore(), settings, codec),
        RemoteEventStore(settings, codec, timeout=15) as client,
        pytest.raises(UncertainCommitError, match="RuntimeError: index out of sync"),
    ):
        client.append(TYPE, "acc-1", [OPENED], 0)


def test_many_concurrent_callers_each_get_their_own_reply(
    remote: RemoteEventStore, owner_store: InMemoryEventStore
) -> None:
    accounts = [new_id() for _ in range(20)]
    results: dict[str, int] = {}

    def open_and_deposit(account: str) -> None:
        remote.append(TYPE, account, [OPENED], 0)
        results[account] = remote.append(
            TYPE, account, [MoneyDeposited(amount=Decimal("1"))], 1
        ).version

    threads = [threading.Thread(target=open_and_deposit, args=(a,)) for a in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(accounts, 2)
    assert all(owner_store.version(TYPE, a) == 2 for a in accounts)


def _app_id() -> str:
    return f"t_routing_{uuid.uuid4().hex[:8]}"


def _wait_for_reply(consumer: Consumer, request_id: str, *, version: int = 0) -> wire.Reply:
    """The reply to ``request_id``, alone in its record (version 1) or in a client's batch
    (version 2); ``version`` given: it must have come in that one."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for message in consumer.consume(num_messages=100, timeout=0.2):
            if message.error() is not None:
                continue
            if wire.request_id_of(message.headers()) == request_id:
                assert version in (0, 1), "a version-1 reply to a version-2 request"
                return wire.decode_reply(message.value())
            if wire.header_of(message.headers(), wire.CLIENT_HEADER) is not None:
                for reply in wire.decode_batch(message.value())[1]:
                    if reply.request_id == request_id:
                        assert version in (0, 2), "a batched reply to a version-1 request"
                        return reply
    raise AssertionError(f"no reply for {request_id} within 15s")


def _request(request_id: str, aggregate_id: str, codec: EventCodec, **fields: Any) -> bytes:
    return wire.encode_request(
        wire.Request(
            **{
                "kind": "append",
                "request_id": request_id,
                "reply_topic": "",
                "client": "test",
                "expires_at_ms": int((time.time() + 60) * 1000),
                "aggregate_type": TYPE,
                "aggregate_id": aggregate_id,
                "expected_version": 0,
                "events": (wire.EncodedEvent(OPENED.event_type(), codec.encode(OPENED)),),
                **fields,
            }
        )
    )


def _raw_round_trip(
    remote: RemoteEventStore, codec: EventCodec, request_id: str, account: str, *, version: int
) -> tuple[bytes, wire.Reply]:
    """A request of protocol ``version`` produced by hand to ``remote``'s owner, and the
    reply it gets (which must come in version 1: alone in its record)."""
    settings = remote.settings
    spy = Consumer(settings.consumer_config(f"{settings.application_id}.spy-v{version}"))
    try:
        spy.assign(partitions_at_end(spy, remote.replies_topic))
        producer = Producer(settings.producer_config())
        value = _request(
            request_id, account, codec, reply_topic=remote.replies_topic, version=version
        )
        producer.produce(
            remote.requests_topic,
            key=account.encode(),
            value=value,
            headers=[(wire.REQUEST_ID_HEADER, request_id.encode())],
        )
        producer.flush(10)
        return value, _wait_for_reply(spy, request_id, version=1)
    finally:
        spy.close()


def test_an_older_client_speaking_version_1_is_served_and_answered_in_version_1(
    remote: RemoteEventStore, owner_store: InMemoryEventStore, codec: EventCodec
) -> None:
    """Mixed versions during an upgrade (owners first): a version-1 request is executed
    and its reply is one record with the ``es-request-id`` header, as an old client reads."""
    account = new_id()
    value, reply = _raw_round_trip(remote, codec, "old-1", account, version=1)
    assert b'"v":1' in value
    assert isinstance(reply, wire.AppendReply) and reply.version == 1
    assert owner_store.version(TYPE, account) == 1


def test_a_request_of_an_unknown_protocol_version_gets_a_decode_error_naming_both(
    remote: RemoteEventStore, owner_store: InMemoryEventStore, codec: EventCodec
) -> None:
    """A client newer than the owner: nothing is executed, and the refusal comes in
    version 1, which every client reads."""
    account = new_id()
    _, reply = _raw_round_trip(remote, codec, "new-1", account, version=3)
    assert isinstance(reply, wire.ErrorReply) and reply.error_type == "DecodeError"
    assert "protocol version 3, this process speaks 1 and 2" in reply.message
    assert isinstance(wire.error_from_reply(reply), DecodeError)
    assert remote.append(TYPE, account, [OPENED], 0).version == 1  # still serving


def test_a_request_too_large_for_kafka_is_refused_before_sending(
    remote: RemoteEventStore, owner_store: InMemoryEventStore
) -> None:
    account = new_id()
    with pytest.raises(StoreError, match=r"larger than the producer's message\.max\.bytes") as e:
        remote.append(TYPE, account, [AccountOpened(owner="x" * 2_000_000)], 0)
    assert not e.value.retriable
    assert owner_store.version(TYPE, account) == 0


def test_a_request_asking_for_replies_on_another_topic_is_refused(
    remote: RemoteEventStore, owner_store: InMemoryEventStore, codec: EventCodec
) -> None:
    settings = remote.settings
    spy = Consumer(settings.consumer_config(f"{settings.application_id}.spy2"))
    try:
        spy.assign(partitions_at_end(spy, remote.replies_topic))
        hijack = wire.Request(
            kind="append",
            request_id="hijack-1",
            reply_topic="bank.account.events",
            client="test",
            expires_at_ms=int((time.time() + 60) * 1000),
            aggregate_type=TYPE,
            aggregate_id="acc-hijack",
            expected_version=0,
            events=(wire.EncodedEvent(OPENED.event_type(), codec.encode(OPENED)),),
        )
        producer = Producer(settings.producer_config())
        producer.produce(
            remote.requests_topic, key=b"acc-hijack", value=wire.encode_request(hijack)
        )
        producer.flush(10)
        reply = _wait_for_reply(spy, "hijack-1")
    finally:
        spy.close()
    assert isinstance(reply, wire.ErrorReply)
    assert reply.error_type == "ConfigurationError"
    assert "replies only on" in reply.message
    assert owner_store.version(TYPE, "acc-hijack") == 0


class ManyRefusingStore(InMemoryEventStore):
    """An owner whose ``append_many`` refuses every batch with a check of its own."""

    def _start_many(self, calls: list[AppendCall]) -> list[Future[AppendResult]]:
        raise TypeError("this store checks batches its own way")


class ManyBrokenStore(InMemoryEventStore):
    """An owner whose ``append_many`` fails with a bug, after queuing who knows what."""

    def _start_many(self, calls: list[AppendCall]) -> list[Future[AppendResult]]:
        raise RuntimeError("queue out of sync")


def test_a_batch_the_store_refuses_whole_is_started_one_by_one_each_once(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=_app_id())
    accounts = [new_id() for _ in range(10)]
    with (
        ManyRefusingStore() as store,
        AppendServer(store, settings, codec),
        RemoteEventStore(settings, codec, timeout=15) as client,
    ):
        futures = [client.append_async(TYPE, a, [OPENED], 0) for a in accounts]
        assert [f.result(30).version for f in futures] == [1] * len(accounts)
        assert all(len(store.recorded_events(TYPE, a)) == 1 for a in accounts)


def test_a_batch_the_store_fails_to_start_is_uncertain_for_each_append(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=_app_id())
    with (
        ManyBrokenStore() as store,
        AppendServer(store, settings, codec),
        RemoteEventStore(settings, codec, timeout=15) as client,
    ):
        futures = [client.append_async(TYPE, new_id(), [OPENED], 0) for _ in range(5)]
        for future in futures:
            error = future.exception(30)
            assert isinstance(error, UncertainCommitError)
            assert "RuntimeError: queue out of sync" in str(error)
            assert "reload the aggregate" in str(error)
