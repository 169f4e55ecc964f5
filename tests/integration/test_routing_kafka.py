"""Routing in front of the real KafkaEventStore: scans, repositories and owner hand-over."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from eventsource.aio.ports import Loader
from eventsource.codec import EventCodec, build_headers
from eventsource.domain import EventMetadata
from eventsource.errors import (
    AggregateNotFoundError,
    ConcurrencyError,
    ConfigurationError,
    DuplicateInstanceError,
    FencedError,
    StoreError,
)
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import append_server_instance_id
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import EventStore
from eventsource.store.repository import Repository
from eventsource.store.routing import (
    AppendServer,
    PartitionScanLoader,
    RemoteEventStore,
    ScanningRemoteEventStore,
)
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

TYPE = Account.aggregate_type
PARTITIONS = 3
OPENED_TYPE = AccountOpened.event_type()


@pytest.fixture(scope="module")
def settings(bootstrap_servers: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers, application_id=f"t_rk_{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="module")
def prefix(settings: KafkaSettings) -> str:
    return f"{settings.application_id}."


@pytest.fixture(scope="module")
def codec() -> EventCodec:
    return EventCodec.for_events(Account.event_types())


@pytest.fixture(scope="module")
def owner(settings: KafkaSettings, prefix: str) -> Iterator[KafkaEventStore]:
    store = KafkaEventStore(settings, [Account], partitions=PARTITIONS, topic_prefix=prefix)
    with store.start(), AppendServer(store, settings, store.codec):
        yield store


@pytest.fixture(scope="module")
def remote(
    owner: KafkaEventStore, settings: KafkaSettings, codec: EventCodec, prefix: str
) -> Iterator[ScanningRemoteEventStore]:
    with ScanningRemoteEventStore(settings, codec, timeout=20, topic_prefix=prefix) as client:
        yield client


def new_id() -> str:
    return f"acc-{uuid.uuid4().hex[:8]}"


def test_a_repository_on_a_remote_store_loads_by_scan_and_saves_through_the_owner(
    remote: ScanningRemoteEventStore, owner: KafkaEventStore
) -> None:
    accounts = Repository(remote, Account)
    account = accounts.create(new_id())
    account.open("ann")
    account.deposit(Decimal("10"))
    accounts.save(account)
    again = accounts.get(account.id)
    again.withdraw(Decimal("4"))
    accounts.save(again)
    loaded = accounts.get(account.id)
    at_owner = owner.load(Account, account.id)
    assert (loaded.balance, loaded.version) == (Decimal("6.00"), 3)
    assert (at_owner.balance, at_owner.version) == (loaded.balance, loaded.version)


def test_a_stale_remote_aggregate_is_refused_by_the_owner(
    remote: ScanningRemoteEventStore, owner: KafkaEventStore
) -> None:
    accounts = Repository(remote, Account)
    account = accounts.create(new_id())
    account.open("ann")
    accounts.save(account)
    stale = accounts.get(account.id)
    owner.append(TYPE, account.id, [MoneyDeposited(amount=Decimal("1"))], 1)
    stale.deposit(Decimal("2"))
    with pytest.raises(ConcurrencyError, match="at version 2, expected 1"):
        accounts.save(stale)
    assert owner.version(TYPE, account.id) == 2


def test_scanning_an_aggregate_without_events_raises_not_found(
    remote: ScanningRemoteEventStore,
) -> None:
    with pytest.raises(AggregateNotFoundError, match="has no events in"):
        remote.load(Account, new_id())


def test_scanning_a_topic_that_does_not_exist_raises_not_found(
    settings: KafkaSettings, codec: EventCodec, owner: KafkaEventStore
) -> None:
    loader = PartitionScanLoader(settings, codec, topic_prefix="nowhere.")
    with pytest.raises(AggregateNotFoundError, match="does not exist yet"):
        loader.load(Account, "acc-1")


def test_a_plain_remote_store_appends_and_a_separate_scan_loader_loads(
    settings: KafkaSettings, codec: EventCodec, owner: KafkaEventStore, prefix: str
) -> None:
    account = new_id()
    loader = PartitionScanLoader(settings, codec, topic_prefix=prefix)
    with RemoteEventStore(settings, codec, timeout=20) as client:
        assert not isinstance(client, Loader)  # it cannot load: it has no load() at all
        assert not isinstance(client, EventStore)
        result = client.append(TYPE, account, [AccountOpened(owner="ann")], 0)
    # The scan reads up to the last stable offset, which passes the commit marker a little
    # after the reply: wait for the aggregate to show up, bounded.
    deadline = time.monotonic() + 20
    while True:
        try:
            loaded = loader.load(Account, account)
            break
        except AggregateNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert (loaded.version, loaded.owner) == (result.version, "ann")


def test_a_scan_refuses_a_stream_with_a_version_gap(
    settings: KafkaSettings, codec: EventCodec, unique_name: str
) -> None:
    topic = f"{unique_name}.bank.account.events"
    ensure_topic(settings, topic, 1)
    producer = Producer(settings.producer_config())
    for version in (1, 3):  # version 2 is missing: not what a single owner writes
        meta = EventMetadata(
            str(uuid.uuid4()), OPENED_TYPE, TYPE, "acc-1", version, datetime.now(UTC)
        )
        producer.produce(
            topic,
            key=b"acc-1",
            value=codec.encode(AccountOpened(owner="x")),
            headers=list(build_headers(meta, source="/test")),
        )
    producer.flush(10)
    loader = PartitionScanLoader(settings, codec, topic_prefix=f"{unique_name}.")
    with pytest.raises(StoreError, match=r"holds version 3 of 'acc-1' after version 1"):
        loader.load(Account, "acc-1")


def test_a_fenced_owner_answers_fenced_and_the_new_owner_takes_the_requests(
    bootstrap_servers: str, codec: EventCodec
) -> None:
    app = f"t_rk_handover_{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=app)
    account = "acc-1"
    old = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{app}.")
    with (
        old.start(),
        AppendServer(old, settings, old.codec) as old_server,
        RemoteEventStore(settings, codec, timeout=20) as client,
    ):
        client.append(TYPE, account, [AccountOpened(owner="ann")], 0)
        new = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{app}.")
        with new.start():  # fences the old store's writer
            assert partition_for_id(account, 1) == 0
            with pytest.raises(FencedError):
                client.append(TYPE, account, [MoneyDeposited(amount=Decimal("1"))], 1)
            deadline = time.monotonic() + 15
            while old_server.running and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not old_server.running
            with AppendServer(new, settings, new.codec):
                result = client.append(TYPE, account, [MoneyDeposited(amount=Decimal("1"))], 1)
            assert result.version == 2
            assert new.version(TYPE, account) == 2


def test_an_aggregate_type_the_owner_does_not_serve_raises_its_configuration_error(
    remote: RemoteEventStore,
) -> None:
    with pytest.raises(ConfigurationError, match=r"'bank\.loan' is not served by this store"):
        remote.append("bank.loan", new_id(), [AccountOpened(owner="ann")], 0)


def test_a_second_append_server_with_the_same_member_id_stops_the_first_naming_it(
    bootstrap_servers: str, unique_name: str
) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=unique_name)
    store = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{unique_name}.")
    instance = append_server_instance_id(unique_name, "pod-0")
    with (
        store.start(),
        AppendServer(store, settings, store.codec, member_id="pod-0") as first,
        AppendServer(store, settings, store.codec, member_id="pod-0") as second,
    ):
        deadline = time.monotonic() + 60  # the broker fences the first at its next heartbeat
        while first.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not first.running and second.running
        error = first.stopped_by
        assert isinstance(error, DuplicateInstanceError)
        assert error.instance_id == instance and repr(instance) in str(error)
