"""Dead letters read back from the DLQ topic as typed records (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import Message

from eventsource.domain import Position
from eventsource.errors import ProjectionError, UnknownSchemaError
from eventsource.projection.deadletter import (
    PoisonRecord,
    Stage,
    build_dlq_headers,
    parse_dead_letter,
)
from eventsource.projection.types import RawRecord

ORIGINAL = RawRecord(
    topic="bank.account.events",
    partition=1,
    offset=42,
    key=b"acc-7",
    value=b"\xc3\x01\xde\xad",
    headers=(("ce_type", b"bank.account.MoneyDeposited"), ("ce_id", b"e-9")),
    timestamp_ms=None,
)


def dlq_message(headers: list[tuple[str, bytes | None]], offset: int = 3) -> Message:
    return Message(
        topic="balances.dlq",
        partition=0,
        offset=offset,
        key=ORIGINAL.key,
        value=ORIGINAL.value,
        headers=headers,
    )


def test_a_dead_letter_reads_back_with_its_original_record_and_context() -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    poison = PoisonRecord(ORIGINAL, Stage.SCHEMA, UnknownSchemaError("fingerprint 0xdead"))
    letter = parse_dead_letter(
        dlq_message(build_dlq_headers(poison, projection_version=2, now=when))
    )

    assert letter.source == Position("bank.account.events", 1, 42)
    assert (letter.dlq_partition, letter.dlq_offset) == (0, 3)
    assert letter.stage == "schema"
    assert letter.exception_class == "eventsource.errors.UnknownSchemaError"
    assert letter.exception_message == "fingerprint 0xdead"
    assert letter.projection_version == 2
    assert letter.dead_lettered_at == when
    assert letter.aggregate_id == "acc-7"
    assert letter.headers == ORIGINAL.headers
    assert letter.original() == ORIGINAL


def test_a_record_without_source_headers_is_not_taken_for_a_dead_letter() -> None:
    with pytest.raises(ProjectionError, match=r"balances\.dlq\[0\]@3 .*not written by eventsource"):
        parse_dead_letter(dlq_message([("ce_type", b"x")]))


def test_malformed_context_headers_are_reported_with_the_dlq_position() -> None:
    headers = build_dlq_headers(PoisonRecord(ORIGINAL, Stage.DECODE), projection_version=1)
    broken = [(k, b"forty-two" if k == "dlq_source_offset" else v) for k, v in headers]
    with pytest.raises(ProjectionError, match=r"balances\.dlq\[0\]@8 has malformed dlq_"):
        parse_dead_letter(dlq_message(broken, offset=8))
