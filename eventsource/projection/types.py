"""The shared types of a projection's failure path, and its listeners.

Everything the runner, the batch applier and the dead-letter package agree on lives here,
and this module imports nothing else from :mod:`eventsource.projection`:

- :class:`RawRecord`: a Kafka record exactly as consumed (what a dead-letter topic keeps).
- :class:`Stage`: where a record failed (``decode``, ``schema``, ``handler``) or that it was
  diverted because its aggregate is parked (``parked``); the ``dlq_stage`` header's value.
- :class:`Failure`: a record the runner could not apply, with everything known about it.
- :class:`DeadLetterPolicy` (STOP / SKIP / PARK) and :class:`FailureAction` (a hook's answer).
- :class:`FailureHook`: decides what happens to poison records.
- :class:`RunnerListener`, :class:`NullListener`, :class:`GuardedListener`: observability.

**Failure hooks.** When a record cannot be applied the runner builds a :class:`Failure` and
asks the projection's :class:`FailureHook` what to do:

- stage ``decode``: headers or payload cannot be decoded (bad magic, corrupt body,
  invalid payload); ``schema``: the writer schema is unknown; ``handler``: the handler
  raised on every one of ``1 + projection.retries`` attempts (the runner retries, sleeping
  ``retry_backoff_s * attempt`` between attempts, each attempt in a savepoint), including
  a database error that the record alone triggers (a constraint, malformed JSON, an
  integer overflow).
- :attr:`FailureAction.STOP`: the runner commits everything before the record, leaves
  the checkpoint *at* the record and raises :class:`ProjectionStoppedError`.
- :attr:`FailureAction.SKIP`: the checkpoint moves past the record in the same database
  transaction as the hook's own writes (``connection`` is that transaction).

:meth:`FailureHook.intercept` sees every record the projection has a handler for (by its
decoded type) before the handler runs: returning True means the hook took the record (e.g.
a parked aggregate's later event sent to the dead-letter topic) and the runner does not
apply it. :meth:`FailureHook.before_commit` runs right before each batch's database commit:
a hook that produced dead letters makes them durable there (flush its producer), so a
checkpoint never passes a record whose dead letter could still be lost.
:meth:`FailureHook.after_rollback` runs when a batch's transaction was rolled back (the
batch is applied again record by record, or re-read later, possibly by another process).

The SKIP / PARK hook is built by :func:`eventsource.projection.deadletter.dead_letter_hook`.

**Listeners.** A :class:`RunnerListener` is told about assignments, batches, dead letters,
catching up and errors; the service runtime turns these into metrics and readiness.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from eventsource.domain import Event, EventMetadata, Position
from eventsource.errors import DecodeError, ProjectionStoppedError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from eventsource.projection.definition import Projection

__all__ = [
    "DeadLetterPolicy",
    "Failure",
    "FailureAction",
    "FailureHook",
    "GuardedListener",
    "NullListener",
    "RawRecord",
    "RunnerListener",
    "Stage",
    "StopOnFailure",
    "stopped_error",
]

log = logging.getLogger(__name__)


class Stage(enum.StrEnum):
    """Where a record failed (the ``dlq_stage`` header). ``PARKED``: diverted, did not fail."""

    DECODE = "decode"
    SCHEMA = "schema"
    HANDLER = "handler"
    PARKED = "parked"


class DeadLetterPolicy(enum.Enum):
    """What a projection does with a poison record."""

    STOP = "stop"  #: halt at the record; the checkpoint stays before it
    SKIP = "skip"  #: send the record to the projection's dead-letter topic and go on
    PARK = "park"  #: like SKIP, and the aggregate's later events go to the DLQ too, in order


class FailureAction(enum.Enum):
    """A failure hook's decision."""

    STOP = "stop"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record exactly as consumed: what a dead-letter topic must preserve."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Failure:
    """A record the runner could not apply, with everything known about it."""

    projection: Projection
    stage: Stage
    record: RawRecord
    error: BaseException
    attempts: int = 1
    meta: EventMetadata | None = None
    event: Event | None = None


class FailureHook(Protocol):
    """Decides what happens to poison records (see the module docstring)."""

    def intercept(self, record: RawRecord, meta: EventMetadata, connection: Connection) -> bool:
        """True when the hook takes this record instead of its handler (e.g. parked)."""
        ...

    def on_failure(self, failure: Failure, connection: Connection) -> FailureAction:
        """Handle a poison record; runs inside the batch's transaction."""
        ...

    def before_commit(self, connection: Connection) -> None:
        """Make the hook's side effects durable before the batch's checkpoint commits."""
        ...

    def after_rollback(self) -> None:
        """The batch's transaction was rolled back."""
        ...

    def close(self) -> None:
        """Release resources (producers); called once when the runner stops."""
        ...


class StopOnFailure:
    """The STOP policy: refuse every poison record."""

    def intercept(self, record: RawRecord, meta: EventMetadata, connection: Connection) -> bool:
        return False

    def on_failure(self, failure: Failure, connection: Connection) -> FailureAction:
        return FailureAction.STOP

    def before_commit(self, connection: Connection) -> None:
        return None

    def after_rollback(self) -> None:
        return None

    def close(self) -> None:
        return None


def stopped_error(failure: Failure) -> ProjectionStoppedError:
    """The error raised when a hook answers STOP: says where and what to do."""
    r = failure.record
    try:
        what = (
            f"{failure.meta.event_type} of {failure.meta.aggregate_id!r}"
            if failure.meta
            else "a record"
        )
    except DecodeError:  # lazily read metadata whose ce_subject is malformed
        what = "a record"
    return ProjectionStoppedError(
        f"projection {failure.projection.name!r} v{failure.projection.version} stopped at "
        f"{r.topic}[{r.partition}]@{r.offset} ({what}): {failure.stage} failed after "
        f"{failure.attempts} attempt(s): {type(failure.error).__name__}: {failure.error}. "
        "The checkpoint stays before this record: fix the handler or the data and restart, "
        "or set policy = DeadLetterPolicy.SKIP to dead-letter such records"
    )


class RunnerListener(Protocol):
    """Callbacks for observability; each must return quickly and never raise."""

    def on_assigned(self, partitions: Sequence[tuple[str, int]]) -> None: ...
    def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> None: ...
    def on_batch(self, n_events: int, seconds: float) -> None: ...
    def on_dead_letter(self, stage: Stage, exc: BaseException) -> None: ...
    def on_caught_up(self) -> None: ...
    def on_error(self, exc: BaseException) -> None: ...


class NullListener:
    """A listener that ignores everything; subclass it and override what you need."""

    def on_assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        return None

    def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        return None

    def on_batch(self, n_events: int, seconds: float) -> None:
        return None

    def on_dead_letter(self, stage: Stage, exc: BaseException) -> None:
        return None

    def on_caught_up(self) -> None:
        return None

    def on_error(self, exc: BaseException) -> None:
        return None


class GuardedListener:
    """Calls a listener and logs, instead of raising, whatever it raises.

    A failing metrics callback must not stop a projection; the runner wraps every listener.
    """

    def __init__(self, inner: RunnerListener) -> None:
        self.inner = inner

    def _call(self, name: str, *args: Any) -> None:
        try:
            getattr(self.inner, name)(*args)
        except Exception:
            log.exception("runner listener %s.%s raised; ignored", type(self.inner).__name__, name)

    def on_assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        self._call("on_assigned", partitions)

    def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        self._call("on_revoked", partitions)

    def on_batch(self, n_events: int, seconds: float) -> None:
        self._call("on_batch", n_events, seconds)

    def on_dead_letter(self, stage: Stage, exc: BaseException) -> None:
        self._call("on_dead_letter", stage, exc)

    def on_caught_up(self) -> None:
        self._call("on_caught_up")

    def on_error(self, exc: BaseException) -> None:
        self._call("on_error", exc)
