"""What a request must pass before it joins a group commit, so that it fails alone.

A group commit is one Kafka transaction: if one of its records cannot be written, or its
events cannot be folded, every request of the batch suffers. So each
request is checked on its own before it joins:

* **size**, in the caller's thread before it is queued: every event's record (payload,
  key, headers and framing) must fit the largest record the topic and the producer take
  (:func:`~eventsource.store.kafka.topic_policy.check_events_topic`), else
  :class:`~eventsource.errors.EventTooLargeError`;
* **@apply**, in the writer's thread after the version check: its events are applied to a
  private copy of the aggregate as the batch's earlier requests leave it
  (:class:`TrialFold`); an ``@apply`` that raises refuses that request alone with
  :class:`~eventsource.errors.ApplyError`, and nothing of it is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eventsource.domain import Aggregate
from eventsource.errors import ApplyError, EventTooLargeError
from eventsource.store.kafka.index import VersionIndex
from eventsource.store.kafka.request import AppendRequest

__all__ = ["RECORD_ALLOWANCE", "Admitted", "TrialFold", "check_record_sizes"]

RECORD_ALLOWANCE = 1024
"""Bytes counted per record beside its payload, key and ids: the CloudEvents headers'
names and fixed values, and Kafka's record and batch framing (a generous bound)."""


def check_record_sizes(
    request: AppendRequest, limit: int | None, topic: str, source: str = ""
) -> None:
    """Refuse the request if one of its events' records is larger than ``limit`` bytes
    (``source``: the ``ce_source`` header's value)."""
    if limit is None:
        return
    payloads = request.payloads
    largest = len(payloads[0]) if len(payloads) == 1 else max(map(len, payloads))
    ids = (
        2 * len(request.aggregate_id)  # the key, and the ce_subject header
        + len(request.aggregate_type)
        + len(request.correlation_id or "")
        + len(request.causation_id or "")
    )
    if largest + RECORD_ALLOWANCE + len(source) + 4 * ids <= limit:
        return  # the usual case: all fit, even at 4 UTF-8 bytes per character
    extra = (
        RECORD_ALLOWANCE
        + len(source)
        + 2 * len(request.key)
        + len(request.aggregate_type)
        + len(request.correlation_id or "")
        + len(request.causation_id or "")
    )
    if largest + extra <= limit:
        return
    for position, (event, payload) in enumerate(zip(request.events, request.payloads, strict=True)):
        size = len(payload) + extra
        if size > limit:
            raise EventTooLargeError(
                f"event #{position + 1} ({type(event).__name__}) of the append to "
                f"{request.aggregate_id!r} makes a record of about {size} bytes, over the "
                f"{limit} bytes {topic!r} takes (the smaller of the topic's "
                "max.message.bytes and the producer's message.max.bytes); nothing was "
                "written: keep large data out of events (store it elsewhere and put a "
                "reference in the event), or raise both limits"
            )


class TrialFold:
    """The aggregates of one batch as its accepted requests leave them (private copies).

    Made once per group commit from one read of the index (:meth:`VersionIndex.scratch_many`);
    once the batch is committed its states *are* the aggregates' new committed states
    (:meth:`admitted`), so committed events are folded once, not again after the commit.
    """

    def __init__(self, index: VersionIndex[Aggregate], where: str, aggregate_ids: Iterable[str]):
        self._index = index
        self._where = where
        self._states = index.scratch_many(aggregate_ids)
        self.committed = {aggregate_id: s.version for aggregate_id, s in self._states.items()}
        """Each aggregate's committed version when the batch began."""
        self._accepted: list[AppendRequest] = []
        self._events = 0  # of the accepted requests

    def version(self, aggregate_id: str) -> int:
        """The aggregate's version after the requests accepted so far."""
        return self._states[aggregate_id].version

    def refusal(self, request: AppendRequest) -> ApplyError | None:
        """Apply the request's events; the error if an ``@apply`` raised (then no change).

        ``None``: the request is accepted (:meth:`admitted` holds it)."""
        aggregate_id = request.aggregate_id
        state = self._states[aggregate_id]
        try:
            for event in request.events:
                state.apply_event(event)
        except Exception as exc:
            version, event_type = state.version + 1, type(event).__name__
            self._states[aggregate_id] = self._rebuilt(aggregate_id)
            error = ApplyError(
                f"the @apply handler of {type(state).__name__} raised {type(exc).__name__}: "
                f"{exc} on {event_type} (version {version} of {aggregate_id!r} on "
                f"{self._where}); nothing was written: a command must only emit events its "
                "aggregate can apply"
            )
            error.__cause__ = exc
            return error
        self._accepted.append(request)
        self._events += len(request.events)
        return None

    def admitted(self) -> Admitted:
        """The accepted requests, in order, and the states they leave their aggregates in."""
        states = self._states
        return Admitted(
            self._accepted,
            {r.aggregate_id: states[r.aggregate_id] for r in self._accepted},
            self._events,
        )

    def _rebuilt(self, aggregate_id: str) -> Aggregate:
        state = self._index.scratch(aggregate_id)
        for earlier in self._accepted:
            if earlier.aggregate_id == aggregate_id:
                for event in earlier.events:
                    state.apply_event(event)
        return state


@dataclass(slots=True)
class Admitted:
    """What one group commit writes: its accepted requests, and the states their aggregates
    will have once it is committed (installed in the index by the writer)."""

    requests: list[AppendRequest]
    states: dict[str, Aggregate]
    events: int
    """How many events the requests hold (counted once, while admitting)."""
