"""The client's table of requests waiting for their reply, and what a missing reply means."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress

from confluent_kafka import Message

from eventsource.errors import DecodeError, StoreUnavailableError, UncertainCommitError
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire

__all__ = ["PendingReplies"]

log = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("aggregate_id", "deadline", "future", "kind", "timeout")

    def __init__(self, kind: wire.RequestKind, aggregate_id: str, timeout: float) -> None:
        self.kind = kind
        self.aggregate_id = aggregate_id
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.future: Future[AppendResult] = Future()


class PendingReplies:
    """Futures of sent requests by request id; thread-safe.

    Each future ends exactly once: with the owner's reply (result or typed error), or, when
    no reply can come any more (deadline passed, request not delivered, client closed), with
    ``UncertainCommitError`` for appends and ``StoreUnavailableError`` for version queries.
    A reply completes the future with the caller's :class:`AppendResult` itself (for a
    version query: the version, no positions), so a request costs one future, not a chain.
    """

    def __init__(self, application_id: str, client_id: str = "") -> None:
        self.application_id = application_id
        self.client_id = client_id
        """Whose batched replies (``es-client`` header) this table takes."""
        self.last_owner: str | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def add(
        self, request_id: str, kind: wire.RequestKind, aggregate_id: str, timeout: float
    ) -> Future[AppendResult]:
        entry = _Pending(kind, aggregate_id, timeout)
        with self._lock:
            self._pending[request_id] = entry
        return entry.future

    def forget(self, request_id: str) -> None:
        """Drop a request that was never sent (its caller gets the send error instead)."""
        with self._lock:
            self._pending.pop(request_id, None)

    def on_reply(self, message: Message) -> None:
        """Complete the futures a reply record answers; other clients' replies are skipped.

        A record is a batch of replies for one client (``es-client`` header, version 2), or
        one reply (``es-request-id`` header, version 1: an owner's answer to a request it
        could not read, or an older owner's).
        """
        headers = message.headers()
        client = wire.header_of(headers, wire.CLIENT_HEADER)
        if client is not None:
            if client == self.client_id:
                self._on_batch(message.value())
            return
        request_id = wire.request_id_of(headers)
        with self._lock:
            entry = self._pending.pop(request_id, None) if request_id else None
        if entry is None or request_id is None:
            return  # another client's reply, or one that came after its deadline
        try:
            reply = wire.decode_reply(message.value())
        except DecodeError as exc:
            self._give_up(request_id, entry, f"its reply is unreadable: {exc}")
            return
        self.last_owner = reply.server
        self._complete(entry, reply)

    def _on_batch(self, value: bytes | None) -> None:
        try:
            server, replies = wire.decode_batch(value)
        except DecodeError as exc:
            # Whose replies it held is unknown: they time out as uncertain, which is true.
            log.error("client %s: unreadable reply batch: %s", self.client_id, exc)
            return
        self.last_owner = server
        pending, lock = self._pending, self._lock
        for reply in replies:
            with lock:
                entry = pending.pop(reply.request_id, None)
            if entry is not None:  # else: answered already, or past its deadline
                self._complete(entry, reply)

    def _complete(self, entry: _Pending, reply: wire.Reply) -> None:
        try:  # the caller may have cancelled the future it was given: nothing to tell then
            if isinstance(reply, wire.ErrorReply):
                entry.future.set_exception(wire.error_from_reply(reply))
            else:
                result = AppendResult(entry.aggregate_id, reply.version, reply.positions)
                entry.future.set_result(result)
        except InvalidStateError:
            pass

    def fail(self, request_id: str, why: str) -> None:
        """No reply can come for ``request_id`` (e.g. the request was not delivered)."""
        with self._lock:
            entry = self._pending.pop(request_id, None)
        if entry is not None:
            self._give_up(request_id, entry, why)

    def expire(self, now: float) -> None:
        """Give up on every request whose deadline has passed."""
        with self._lock:
            expired = [(rid, e) for rid, e in self._pending.items() if e.deadline <= now]
            for request_id, _ in expired:
                del self._pending[request_id]
        for request_id, entry in expired:
            self._give_up(request_id, entry, f"no reply from the owner within {entry.timeout:g}s")

    def fail_all(self, why: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for request_id, entry in pending.items():
            self._give_up(request_id, entry, why)

    def _give_up(self, request_id: str, entry: _Pending, why: str) -> None:
        hint = f"is an AppendServer running for application {self.application_id!r}?"
        if entry.kind == "version":
            error: Exception = StoreUnavailableError(
                f"version query {request_id} for {entry.aggregate_id!r} failed: {why}; {hint}"
            )
        else:
            error = UncertainCommitError(
                f"append request {request_id} for aggregate {entry.aggregate_id!r} is "
                f"uncertain: {why}. The owner may still have executed it: reload the "
                f"aggregate (or ask version()) before retrying; {hint}"
            )
        with suppress(InvalidStateError):  # done only if its caller cancelled it
            entry.future.set_exception(error)
