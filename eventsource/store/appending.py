"""``append`` and ``append_async`` written once, for every store and client.

Every :class:`~eventsource.store.port.Appender` offers both calls with the same arguments and
the same argument checks; they differ only in how one checked call is started (queued to a
writer, sent to the owner, executed at once) and how its outcome is waited for. A store
subclasses :class:`AppenderBase` and implements those two steps; the public signatures and
the checks live here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future

from eventsource.domain import Event
from eventsource.store.port import AppendCall, AppendResult, check_append_arguments

__all__ = ["AppendCall", "AppenderBase", "completed", "failed"]


class AppenderBase(ABC):
    """``append`` / ``append_async`` over two steps a store implements.

    :meth:`_start_append` starts one checked call and returns its future (raising only what
    is refused before anything starts: the argument errors, a missing ``@apply`` handler, a
    closed store). :meth:`_outcome` waits for that future and says what a wait that ends
    too soon means (by default: wait for as long as the caller says).
    """

    def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        timeout: float | None = None,
    ) -> AppendResult:
        """Append ``events`` if the aggregate has ``expected_version`` events, and wait.

        Same contract as :meth:`~eventsource.store.port.EventStore.append`. ``timeout`` is
        the longest wait in seconds (default: the store's own); a wait that ends first
        raises ``UncertainCommitError`` when the append may still commit.
        """
        call = AppendCall(
            aggregate_type, aggregate_id, events, expected_version, correlation_id, causation_id
        )
        check_append_arguments(aggregate_id, events, expected_version)
        return self._outcome(self._start_append(call), call, timeout)

    def append_async(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Future[AppendResult]:
        """Start the append; the future completes with its result or its typed error."""
        call = AppendCall(
            aggregate_type, aggregate_id, events, expected_version, correlation_id, causation_id
        )
        check_append_arguments(aggregate_id, events, expected_version)
        return self._start_append(call)

    def append_many(self, calls: Iterable[AppendCall]) -> list[Future[AppendResult]]:
        """Start several appends (commands) at once: one future per command, in order.

        Each command is an append of its own, as if by :meth:`append_async`: its expected
        version is checked on its own, its events are written all or none, and it succeeds
        or fails alone (a ``ConcurrencyError`` of one leaves the others untouched). Argument
        errors (``ValueError``, ``TypeError``) of any command raise before any command
        starts; every other refusal (a missing ``@apply`` handler, a closed store, ...) is
        that command's future's error. Commands to one aggregate are appended in the order
        given. Cheaper per command than as many ``append_async`` calls where a store can
        queue them together (the Kafka stores take each partition writer's lock once).
        """
        checked = []
        for call in calls:
            if type(call) is not AppendCall:
                raise TypeError(
                    f"append_many takes AppendCall tuples, got {type(call).__name__}: build "
                    "each command with AppendCall(aggregate_type, aggregate_id, events, "
                    "expected_version)"
                )
            check_append_arguments(call.aggregate_id, call.events, call.expected_version)
            checked.append(call)
        return self._start_many(checked)

    @abstractmethod
    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        """Queue, send or execute one checked append; its future tells the outcome."""

    def _start_many(self, calls: list[AppendCall]) -> list[Future[AppendResult]]:
        """Start checked appends in order (by default one by one); a refusal other than an
        argument error becomes that command's future's error."""
        futures: list[Future[AppendResult]] = []
        for call in calls:
            try:
                futures.append(self._start_append(call))
            except (ValueError, TypeError):
                raise
            except Exception as exc:
                futures.append(failed(exc))
        return futures

    def _outcome(
        self, future: Future[AppendResult], call: AppendCall, timeout: float | None
    ) -> AppendResult:
        """The outcome of a started append (waiting at most ``timeout`` s, or the default).

        By default the future's result, waited for without a bound when ``timeout`` is
        ``None``: right for futures that complete at once or by themselves.
        """
        return future.result(timeout)


def completed(
    append: Callable[[AppendCall], AppendResult], call: AppendCall
) -> Future[AppendResult]:
    """A future that already holds ``append(call)``'s result or error (a store that appends
    in the caller's thread). Argument errors (``ValueError``, ``TypeError``) are raised, as
    by every store."""
    future: Future[AppendResult] = Future()
    try:
        future.set_result(append(call))
    except (ValueError, TypeError):
        raise
    except Exception as exc:
        future.set_exception(exc)
    return future


def failed(error: BaseException) -> Future[AppendResult]:
    """A future that already holds ``error``."""
    future: Future[AppendResult] = Future()
    future.set_exception(error)
    return future
