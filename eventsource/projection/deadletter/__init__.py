"""Dead letters: the one entry point for what a projection does with records it cannot apply.

- :func:`dead_letter_hook`: the failure hook for a projection's policy (STOP, SKIP, PARK;
  :mod:`~eventsource.projection.deadletter.policy`).
- :func:`list_dead_letters` / :func:`iter_dead_letters`: read the DLQ topic
  (:mod:`~eventsource.projection.deadletter.reader`).
- :func:`replay_dead_letters`: apply dead letters again after a fix
  (:mod:`~eventsource.projection.deadletter.replay`).
- :func:`discard_dead_letters` / :func:`unpark_aggregates`: give dead letters up, recorded
  so that replay never applies them (:mod:`~eventsource.projection.deadletter.discard`).
- The ``dlq_*`` headers are built and parsed in
  :mod:`~eventsource.projection.deadletter.headers`; the Kafka producer is in
  :mod:`~eventsource.projection.deadletter.sink`; parked aggregates and the marks of each
  dead letter's fate in :mod:`~eventsource.projection.deadletter.parking`.
"""

from eventsource.kafka.names import dlq_topic
from eventsource.projection.deadletter.discard import (
    DiscardResult,
    discard_dead_letters,
    unpark_aggregates,
)
from eventsource.projection.deadletter.headers import (
    DLQ_HEADER_PREFIX,
    DeadLetterRecord,
    Headers,
    PoisonRecord,
    build_dlq_headers,
    header_value,
    parse_dead_letter,
    redact_message,
)
from eventsource.projection.deadletter.parking import SqlParkingLot
from eventsource.projection.deadletter.policy import DeadLetterHandler, dead_letter_hook
from eventsource.projection.deadletter.reader import (
    dlq_end_offsets,
    iter_dead_letters,
    list_dead_letters,
)
from eventsource.projection.deadletter.replay import DlqReplayResult, replay_dead_letters
from eventsource.projection.deadletter.sink import (
    DeadLetterSink,
    KafkaDeadLetterSink,
    ensure_dlq_topic,
)
from eventsource.projection.types import DeadLetterPolicy, Stage

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DeadLetterHandler",
    "DeadLetterPolicy",
    "DeadLetterRecord",
    "DeadLetterSink",
    "DiscardResult",
    "DlqReplayResult",
    "Headers",
    "KafkaDeadLetterSink",
    "PoisonRecord",
    "SqlParkingLot",
    "Stage",
    "build_dlq_headers",
    "dead_letter_hook",
    "discard_dead_letters",
    "dlq_end_offsets",
    "dlq_topic",
    "ensure_dlq_topic",
    "header_value",
    "iter_dead_letters",
    "list_dead_letters",
    "parse_dead_letter",
    "redact_message",
    "replay_dead_letters",
    "unpark_aggregates",
]
