"""No confluent-kafka call runs while an exception is handled: nothing it raises keeps that
exception (and the frames and clients it holds) alive.

confluent-kafka 2.16.1 never releases the ``KafkaError`` of a synchronous call's
``KafkaException``, and CPython stores the exception being handled in it as its context
(see :mod:`eventsource.kafka.unchained`). No broker is needed: a client pointed at a
closed port, or a producer without ``transactional.id`` asked to begin a transaction,
fails at once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import weakref
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from eventsource.codec import EventCodec
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.unchained import unchained
from eventsource.lifecycle import ServiceThread
from eventsource.store.kafka.admission import Admitted
from eventsource.store.kafka.options import WriterOptions, WriterState
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.kafka.writer import PartitionWriter
from examples.bank.domain import Account, AccountOpened


class Handled(Exception):
    """The exception being handled when the Kafka call fails (weak references work)."""


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"


def failing_listing(address: str) -> Callable[[], object]:
    admin = AdminClient(KafkaSettings(bootstrap_servers=address).admin_config())
    return lambda: admin.list_topics(timeout=0.05)


def handled_then(call: Callable[[Callable[[], object]], object]) -> weakref.ref[Handled]:
    """Raise and handle a ``Handled``; inside its ``except`` block, ``call`` a failing
    listing. Returns a weak reference to the handled exception."""
    listing = failing_listing(nowhere())

    def handle() -> weakref.ref[Handled]:
        try:
            raise Handled("the caller's failure")
        except Handled as exc:
            with pytest.raises(KafkaException):
                call(listing)
            return weakref.ref(exc)

    return handle()


def test_confluent_kafka_still_keeps_the_exception_handled_during_a_failed_call() -> None:
    """The upstream defect the rest works around: when this fails, confluent-kafka fixed
    it, and :mod:`eventsource.kafka.unchained` may go."""
    held = handled_then(lambda listing: listing())
    gc.collect()
    assert held() is not None


def test_unchained_lets_the_handled_exception_go() -> None:
    held = handled_then(unchained)
    gc.collect()
    assert held() is None, "the handled exception outlived a Kafka call made by unchained()"


def test_unchained_calls_on_the_callers_thread_when_nothing_is_handled() -> None:
    assert unchained(threading.current_thread) is threading.current_thread()
    with pytest.raises(KafkaException):
        unchained(failing_listing(nowhere()))


def test_a_failed_group_commit_is_recovered_outside_its_except_block() -> None:
    """``begin_transaction`` fails, then the recovery's ``abort_transaction`` fails too: the
    first failure must not end up in the second one's ``KafkaError``."""
    settings = KafkaSettings(bootstrap_servers=nowhere())
    options = WriterOptions().resolved(settings)
    codec = EventCodec.for_events([AccountOpened])
    writer = PartitionWriter(settings, "t", 0, Account, codec, options)
    writer.producer = Producer(settings.producer_config())  # not transactional
    writer.state = WriterState.SERVING
    writer.stop()  # closing: the recovery gives up instead of reconnecting

    def commit() -> weakref.ref[BaseException]:
        request = AppendRequest(
            aggregate_type="account",
            aggregate_id="acc-1",
            events=(),
            payloads=(),
            event_ids=(),
            expected_version=0,
        )
        assert request.set_running_or_notify_cancel()
        writer._transact(Admitted([request], {}, 0))
        error = request.exception()
        assert isinstance(error, StoreUnavailableError)
        assert isinstance(error.__cause__, KafkaException)  # begin_transaction's failure
        return weakref.ref(error.__cause__)

    held = commit()
    gc.collect()
    assert held() is None, "the failed commit's error outlived its recovery"
    assert writer.producer is None  # replaced: the recovery gave the old one up


class _Fails(ServiceThread):
    def __init__(self, stage: str, cleanup: Callable[[], object]) -> None:
        super().__init__(f"fails-in-{stage}")
        self.stage = stage
        self.cleanup = cleanup

    def _prepare(self) -> None:
        if self.stage == "prepare":
            raise Handled("cannot start")

    def _loop(self) -> None:
        raise Handled("the loop broke")

    def _cleanup(self) -> None:
        with contextlib.suppress(KafkaException):  # a failed clean-up is still one
            self.cleanup()


@pytest.mark.parametrize("stage", ["prepare", "loop"])
def test_a_service_thread_that_failed_cleans_up_outside_its_except_block(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loop's error is logged; a captured log record would hold it as well.
    monkeypatch.setattr(logging.getLogger("eventsource.lifecycle"), "disabled", True)

    def fail() -> weakref.ref[BaseException]:
        service = _Fails(stage, failing_listing(nowhere()))
        service.start_thread()
        assert service.wait_ready(30.0)
        assert service.join(30.0)
        error = service.start_error if stage == "prepare" else service.error
        assert isinstance(error, Handled)
        return weakref.ref(error)

    held = fail()
    gc.collect()
    assert held() is None, f"the {stage} error outlived the thread's clean-up"
