"""A failed start-up leaves no Kafka client behind: nothing for interpreter exit to race.

A ``KafkaException`` that confluent-kafka raises while the caller is handling another
exception takes that exception as its context inside its ``KafkaError``, where the
garbage collector cannot see it: the handled exception, every frame of its traceback and
the clients those frames hold then live until the process exits, their librdkafka threads
still reconnecting while the interpreter shuts down (``eventsource run`` with a wrong
password once died of SIGSEGV after logging exit code 2). The login probe is what callers
ask from an ``except`` block, so it must raise nothing into their exception context.
No broker is needed: a secured client pointed at a closed port fails the same way.
"""

from __future__ import annotations

import gc
import os
import weakref

import pytest
from pydantic import SecretStr

from eventsource.errors import BrokerUnreachableError
from eventsource.kafka.access import login_failure
from eventsource.kafka.admin import topic_partitions
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.service.shutdown import librdkafka_threads


def secured_nowhere() -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="app",
        sasl_password=SecretStr("not-checked"),
    )


class _Marker:
    """Something only the handling frame refers to."""


def test_the_login_probe_asked_while_handling_an_exception_lets_that_exception_go() -> None:
    settings = secured_nowhere()

    def handle() -> weakref.ref[_Marker]:
        marker = _Marker()
        try:
            raise RuntimeError("the caller's failure")
        except RuntimeError:
            assert login_failure(settings, 0.3) is None  # nothing answers
        return weakref.ref(marker)

    held = handle()
    gc.collect()
    assert held() is None, "the handled exception (and its frames) outlived the probe"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_failed_topic_listing_destroys_its_client_before_the_error_reaches_the_caller() -> None:
    settings = secured_nowhere()
    before = librdkafka_threads()
    with pytest.raises(BrokerUnreachableError):
        topic_partitions(settings, timeout=0.3)
    gc.collect()
    assert librdkafka_threads() <= before
