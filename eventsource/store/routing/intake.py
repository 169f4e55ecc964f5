"""The append server's intake: a consumed batch of request records, read and let in.

Each record is decoded and checked on its own; what can be answered at once (unreadable,
a foreign reply topic, a full backlog, events the owner cannot decode, bad arguments) is
handed to the outbox as a refusal, what has expired is skipped, and the rest come back as
the appends (with their calls) and version queries to start. The backlog's room is read
once per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Message

from eventsource.errors import ConfigurationError, DecodeError
from eventsource.store.port import AppendCall, check_append_arguments
from eventsource.store.routing import wire
from eventsource.store.routing.backlog import Backlog
from eventsource.store.routing.outbox import ReplyOutbox
from eventsource.store.routing.ports import EventDecoder

__all__ = ["Admitted", "Intake"]

Admitted = tuple[wire.Request, AppendCall]
"""An append request let in, and the call it asks for."""

log = logging.getLogger(__name__)


class Intake:
    """Reads request records for one server (see the module's docstring)."""

    def __init__(
        self,
        codec: EventDecoder,
        replies_topic: str,
        server_id: str,
        backlog: Backlog,
        outbox: ReplyOutbox,
    ) -> None:
        self.codec = codec
        self.replies_topic = replies_topic
        self.server_id = server_id
        self.backlog = backlog
        self.outbox = outbox

    def read(
        self, messages: list[Message], on_error: Callable[[object], None]
    ) -> tuple[list[Admitted], list[wire.Request]]:
        """The appends and the version queries of ``messages`` to start now (in order);
        a record's consumer error goes to ``on_error``."""
        appends: list[Admitted] = []
        queries: list[wire.Request] = []
        room = self.backlog.room()
        now_ms = time.time() * 1000
        refuse = self.outbox.refuse
        for message in messages:
            error = message.error()
            if error is not None:
                on_error(error)
                continue
            try:
                request = wire.decode_request(message.value())
            except DecodeError as exc:
                self._reject_unreadable(message, exc)
                continue
            if request.reply_topic != self.replies_topic:
                # Replies go only to the application's replies topic: a request must not
                # make the owner write into another topic (an events topic, say).
                refuse(request._replace(reply_topic=self.replies_topic), self._foreign(request))
                continue
            if request.expires_at_ms < now_ms:
                log.warning(
                    "append server %s skips request %s for %r: its client gave up before "
                    "it arrived",
                    self.server_id,
                    request.request_id,
                    request.aggregate_id,
                )
                continue
            if room <= 0:
                refuse(request, self.backlog.overloaded(request.aggregate_id))
                continue
            room -= 1
            if request.kind == "version":
                queries.append(request)
                continue
            try:
                call = self._call(request, message)
            except Exception as exc:  # decode / argument errors: nothing was written
                refuse(request, exc)
                continue
            appends.append((request, call))
        return appends, queries

    def _call(self, request: wire.Request, message: Message) -> AppendCall:
        """The append a request asks for: its events decoded (the ``@apply`` trial needs
        them), its payloads kept (the store may write them as they are), its arguments
        checked."""
        decode, topic = self.codec.decode_at, message.topic() or ""
        partition, offset = message.partition() or 0, message.offset() or 0
        payloads = tuple([e.payload for e in request.events])
        events = [decode(payload, topic, partition, offset) for payload in payloads]
        check_append_arguments(request.aggregate_id, events, request.expected_version)
        return AppendCall(
            request.aggregate_type,
            request.aggregate_id,
            events,
            request.expected_version,
            request.correlation_id,
            request.causation_id,
            payloads,
        )

    def _foreign(self, request: wire.Request) -> ConfigurationError:
        return ConfigurationError(
            f"request {request.request_id} asks for replies on {request.reply_topic!r}; "
            f"this server replies only on {self.replies_topic!r}: use the same "
            "application_id on clients and owner"
        )

    def _reject_unreadable(self, message: Message, exc: DecodeError) -> None:
        located = exc.at(message.topic() or "", message.partition() or 0, message.offset() or 0)
        request_id = wire.request_id_of(message.headers())
        log.error("append server %s: unreadable request: %s", self.server_id, located)
        if request_id is None:
            return
        # Without a readable body neither the reply topic nor the client's version is
        # known: a version-1 reply (every client reads those) on the shared topic.
        stub = wire.Request("append", request_id, self.replies_topic, "", 0, "", "", version=1)
        self.outbox.refuse(stub, located)
