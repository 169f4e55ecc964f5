"""Grouped writers without a broker: names, argument checks, and how failures surface."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    FencedError,
    NotOwnerError,
    StoreUnavailableError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from eventsource.store.kafka.scaleout.group_store_futures import fenced_as_not_owner
from eventsource.store.kafka.scaleout.group_store_route import member_settings
from eventsource.store.kafka.scaleout.ownership import Owner, writers_group
from eventsource.store.port import AppendResult
from examples.bank.domain import Account, AccountOpened

SETTINGS = KafkaSettings(bootstrap_servers="127.0.0.1:1", application_id="shop")


def store(tmp_path: Path, **kwargs: object) -> GroupedKafkaEventStore:
    return GroupedKafkaEventStore(SETTINGS, [Account], directory=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_the_writers_group_and_member_routing_topics_are_named_after_the_application() -> None:
    assert writers_group("shop") == "shop.writers"
    assert member_settings(SETTINGS, "writer-1").application_id == "shop.writer-1"
    assert str(Owner("writer-1", "/10.0.0.7")) == "writer-1 (at /10.0.0.7)"


def test_the_default_member_name_is_host_and_pid_made_safe_for_topic_names(tmp_path: Path) -> None:
    name = store(tmp_path).member
    assert name.endswith(f"-{__import__('os').getpid()}")
    assert ":" not in name


@pytest.mark.parametrize("member", ["", "a b", "host:1", "x" * 101])
def test_a_member_name_that_cannot_name_topics_is_refused(tmp_path: Path, member: str) -> None:
    with pytest.raises(ConfigurationError, match="must be 1-100 letters"):
        store(tmp_path, member=member)


def test_a_store_needs_an_aggregate_class(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least one aggregate class"):
        GroupedKafkaEventStore(SETTINGS, [], directory=tmp_path)


def test_an_unserved_aggregate_type_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'bank\.loan' is not served"):
        store(tmp_path, member="w1").append("bank.loan", "l-1", [AccountOpened(owner="x")], 0)


def test_aggregate_ids_starting_with_nul_are_reserved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="may not start with NUL"):
        store(tmp_path, member="w1").append("bank.account", "\x00x", [AccountOpened(owner="x")], 0)


def test_a_store_that_was_not_started_refuses_appends_saying_so(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="not started: call start"):
        store(tmp_path, member="w1").append("bank.account", "a", [AccountOpened(owner="x")], 0)


def test_an_append_without_events_is_refused_before_any_lookup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one event"):
        store(tmp_path, member="w1").append("bank.account", "a", [], 0)


def test_a_fenced_append_reaches_the_caller_as_a_retriable_not_owner_error() -> None:
    inner: Future[AppendResult] = Future()
    outer = fenced_as_not_owner(inner, "t.events[3]", "w1")
    inner.set_exception(FencedError("fenced"))
    error = outer.exception()
    assert isinstance(error, NotOwnerError) and error.retriable
    assert "lost t.events[3] to a newer owner" in str(error)
    assert isinstance(error.__cause__, FencedError)


def test_other_outcomes_pass_through_unchanged() -> None:
    ok: Future[AppendResult] = Future()
    failed: Future[AppendResult] = Future()
    outer_ok, outer_failed = (
        fenced_as_not_owner(ok, "p", "w"),
        fenced_as_not_owner(failed, "p", "w"),
    )
    ok.set_result(AppendResult("a", 1, ()))
    conflict = ConcurrencyError("a", 0, 1)
    failed.set_exception(conflict)
    assert outer_ok.result() == AppendResult("a", 1, ())
    assert outer_failed.exception() is conflict


def test_cancelling_succeeds_only_while_the_writer_has_not_started_the_append() -> None:
    queued: Future[AppendResult] = Future()
    outer = fenced_as_not_owner(queued, "p", "w")
    assert outer.cancel() and queued.cancelled() and outer.cancelled()

    running: Future[AppendResult] = Future()
    assert running.set_running_or_notify_cancel()
    outer = fenced_as_not_owner(running, "p", "w")
    assert not outer.cancel()  # it may still commit: the caller must not be told otherwise
    running.set_result(AppendResult("a", 1, ()))
    assert outer.result().version == 1
