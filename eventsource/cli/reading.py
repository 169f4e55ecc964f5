"""Reading a topic outside any consumer group: where to start, when to stop, how to print.

Used by ``events tail`` and ``events show``. The reader assigns partitions itself (no group,
no commits), reads ``read_committed`` like a projection does, and stops at the end of every
partition unless it follows the topic.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from eventsource.cli.common import kafka_error
from eventsource.codec import EventCodec
from eventsource.errors import ConfigurationError, DecodeError
from eventsource.kafka.admin import topic_not_found
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.metadata import existing_topics
from eventsource.kafka.names import reader_group
from eventsource.kafka.reach import is_unreachable, unreachable_error


@dataclass(frozen=True)
class StartAt:
    """``beginning``, ``end``, an offset (every chosen partition) or a timestamp (ms)."""

    kind: str
    value: int = 0

    @classmethod
    def parse(cls, spec: str) -> StartAt:
        text = spec.strip()
        if text in {"beginning", "earliest"}:
            return cls("beginning")
        if text in {"end", "latest"}:
            return cls("end")
        if text.isdigit():
            return cls("offset", int(text))
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"--from {spec!r} is not 'beginning', 'end', an offset (e.g. 42) or an "
                "ISO-8601 timestamp (e.g. 2026-01-31T12:00:00Z)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls("timestamp", int(moment.timestamp() * 1000))


def open_reader(
    settings: KafkaSettings, topic: str, partitions: list[int] | None, start: StartAt
) -> tuple[Consumer, list[int]]:
    """A consumer assigned to ``partitions`` (all when None) of ``topic`` at ``start``."""
    consumer = Consumer(
        settings.consumer_config(
            reader_group(settings.application_id, "cli", unique=True),
            **{"enable.partition.eof": True},
        )
    )
    try:
        meta = existing_topics(consumer, [topic], settings.connect_timeout_s)[topic]
        if meta is None:
            raise topic_not_found(topic, settings)
        available = sorted(meta.partitions)
        chosen = available if partitions is None else partitions
        missing = sorted(set(chosen) - set(available))
        if missing:
            raise ConfigurationError(
                f"topic {topic!r} has partitions {available[0]}..{available[-1]}, not {missing}"
            )
        consumer.assign(_start_positions(consumer, topic, chosen, start))
    except KafkaException as exc:
        consumer.close()
        if is_unreachable(exc):
            raise unreachable_error(settings, settings.connect_timeout_s) from exc
        raise kafka_error(exc, f"cannot read {topic!r}") from exc
    except Exception:
        consumer.close()
        raise
    return consumer, chosen


def _start_positions(
    consumer: Consumer, topic: str, partitions: list[int], start: StartAt
) -> list[TopicPartition]:
    if start.kind == "beginning":
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    if start.kind == "end":
        return [TopicPartition(topic, p, OFFSET_END) for p in partitions]
    if start.kind == "offset":
        return [TopicPartition(topic, p, start.value) for p in partitions]
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, start.value) for p in partitions], timeout=15
    )
    # -1: no record at or after the timestamp, so start at the end.
    return [
        TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
        for tp in found
    ]


def records(
    consumer: Consumer,
    partitions: list[int],
    *,
    follow: bool,
    poll_timeout: float = 0.5,
) -> Iterator[Message]:
    """Records in arrival order; without ``follow``, stops once every partition hit its end."""
    pending = set(partitions)
    while follow or pending:
        msg = consumer.poll(poll_timeout)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            if error.fatal() or not error.retriable():
                raise kafka_error(KafkaException(error), f"reading {msg.topic()} failed")
            continue
        yield msg


def record_json(msg: Message, codec: EventCodec | None) -> dict[str, Any]:
    """One record as a JSON-ready dict: position, key, headers, type and decoded event."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = {k: _text(v) for k, v in pairs}
    kind, ts = msg.timestamp()
    row: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": _iso(ts) if kind else None,
        "key": _text(msg.key()),
        "type": headers.get("ce_type"),
        "version": _int(headers.get("ce_sequence")),
        "headers": headers,
    }
    value = msg.value()
    if codec is None:
        row["value_base64"] = base64.b64encode(value).decode() if value else None
        return row
    try:
        event = codec.decode_at(value, msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
    except DecodeError as exc:
        row["data"] = None
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["type"] = row["type"] or event.event_type()
    row["data"] = event.model_dump(mode="json")
    return row


def human_line(row: dict[str, Any]) -> str:
    """A one-line rendering of :func:`record_json`'s output."""
    where = f"{row['topic']}[{row['partition']}]@{row['offset']}"
    version = f"v{row['version']}" if row.get("version") is not None else "v?"
    if "error" in row:
        body = f"UNDECODABLE {row['error']}"
    elif "data" in row:
        body = json.dumps(row["data"], separators=(",", ":"))
    else:
        size = len(base64.b64decode(row.get("value_base64") or ""))
        body = f"<{size} bytes; pass --aggregate to decode>"
    kind = row["type"] or "?"
    return f"{where}  {row['timestamp']}  {row['key']}  {version}  {kind}  {body}"


def _text(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", errors="replace")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
