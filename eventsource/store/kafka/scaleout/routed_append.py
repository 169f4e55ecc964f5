"""One routed append, from its first send to its answer, without a thread of its own.

:class:`RoutedAppend` sends an append through the owner's client and chains on the client's
future; an answer that says nothing was written and the owner moved or was busy sends it
again (on the router's timer thread), until the router's ``retry_for`` has passed.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Final

from eventsource.errors import NotOwnerError, StoreUnavailableError
from eventsource.store.appending import AppendCall
from eventsource.store.port import AppendResult
from eventsource.store.routing import RemoteEventStore

if TYPE_CHECKING:  # the router makes these; it imports this module
    from eventsource.store.kafka.scaleout.group_store_route import GroupRouter

__all__ = ["RETRIABLE", "RoutedAppend"]

RETRIABLE: Final = (NotOwnerError, StoreUnavailableError)
"""What a router sends again: nothing was written, and another try may find an owner."""


class RoutedAppend:
    """One append sent to its owner, and sent again while nothing was written and the
    owner moved or was busy (``NotOwnerError``, ``StoreUnavailableError``, until
    ``retry_for`` has passed). Everything else, an ``UncertainCommitError`` above all,
    completes :attr:`result` as it is."""

    def __init__(self, router: GroupRouter, call: AppendCall) -> None:
        self.router = router
        self.call = call
        self.deadline = time.monotonic() + router.retry_for
        self.result: Future[AppendResult] = Future()
        self._last_error: BaseException | None = None

    def send(self, described_after: float = 0.0) -> None:
        """Look the owner up (a description newer than ``described_after``), then send."""
        router, call = self.router, self.call
        if router.closing:
            self.result.set_exception(router.closed_error(call.aggregate_id, self._last_error))
            return
        try:
            member = router.current_owner(call.aggregate_type, call.aggregate_id, described_after)
        except Exception as exc:
            self._failed(exc)
            return
        self.send_to(member)

    def send_to(self, member: str) -> None:
        """Send through ``member``'s client; its answer completes or retries the append."""
        router, call = self.router, self.call
        try:
            client = router.clients.acquire(member)
        except Exception as exc:
            self._failed(exc)
            return
        try:
            sent = client.append_async(
                call.aggregate_type,
                call.aggregate_id,
                call.events,
                call.expected_version,
                correlation_id=call.correlation_id,
                causation_id=call.causation_id,
            )
        except Exception as exc:
            router.clients.release(member, client)
            self._failed(exc)
            return
        sent.add_done_callback(lambda f: self._answered(f, member, client))

    def _answered(self, sent: Future[AppendResult], member: str, client: RemoteEventStore) -> None:
        self.router.clients.release(member, client)
        error = sent.exception()
        if error is None:
            self.result.set_result(sent.result())
        else:
            self._failed(error)

    def _failed(self, error: BaseException) -> None:
        # Nothing was written on a retriable error: ownership moved, the owner is still
        # taking over or is overloaded, or its writer stopped (its partition moves on).
        # Refusals that cannot change (ApplyError, EventTooLargeError, ConcurrencyError)
        # and UncertainCommitError are other classes: they complete the result as they are.
        if not isinstance(error, RETRIABLE) or time.monotonic() > self.deadline:
            self.result.set_exception(error)
        elif self.router.closing:
            self.result.set_exception(self.router.closed_error(self.call.aggregate_id, error))
        else:
            self._last_error = error
            self.router.retry_later(self)
