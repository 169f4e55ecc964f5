"""The append server's replies: answered requests, sent in batches from one thread.

A routed append is answered when its future completes, in the thread that completed it
(a partition writer finishing a group commit completes all of its futures in one go). That
thread only puts the request on a queue; the outbox thread takes everything queued at
once and sends, per client, **one** reply record holding all of its replies
(version-2 clients; a version-1 client gets one record per request, as it expects). So a
group commit of a hundred appends from four clients costs four produced records and four
JSON encodings, not a hundred, and one acquisition of the backlog's lock.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from eventsource.errors import FencedError
from eventsource.futures import done_outcome
from eventsource.gcpause import gc_paused
from eventsource.lifecycle import ServiceThread
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire
from eventsource.store.routing.backlog import Backlog, Tracked, expired_error

__all__ = ["ReplyOutbox"]

log = logging.getLogger(__name__)

MAX_BATCH: Final = 500
"""Replies per record at most (about 60 bytes each, far below a record's 1 MB limit; an
error's message can be longer)."""
_STOP: Final = object()

# (request, the future it waits on or the error it is answered with, its backlog entry)
_Item = tuple[wire.Request, "Future[AppendResult] | BaseException", Tracked | None]


class ReplyOutbox(ServiceThread):
    """Sends the answers of requests, batched per client, then frees their backlog slots.

    :meth:`follow` answers a request when its future completes, :meth:`refuse` answers one
    with an error now (nothing was started). A ``FencedError`` answer calls ``on_fenced``
    after the reply is sent.
    """

    def __init__(
        self,
        producer: Producer,
        server_id: str,
        backlog: Backlog,
        on_fenced: Callable[[], None],
    ) -> None:
        super().__init__("append-server-replies")
        self.producer = producer
        self.server_id = server_id
        self.backlog = backlog
        self.on_fenced = on_fenced
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def follow(self, request: wire.Request, future: Future[AppendResult], tracked: Tracked) -> None:
        """Answer ``request`` once ``future`` completes (in whatever thread completes it)."""
        put = self._queue.put
        future.add_done_callback(lambda f: put((request, f, tracked)))

    def refuse(self, request: wire.Request, error: BaseException) -> None:
        """Answer ``request`` with ``error``: it was refused before anything started."""
        self._queue.put((request, error, None))

    def _wake(self) -> None:  # close(): what is queued is sent, then the thread ends
        self._queue.put(_STOP)

    def _loop(self) -> None:
        get, take = self._queue.get, self._queue.get_nowait
        while True:
            items: list[_Item] = []
            item = get()
            stop = item is _STOP
            if not stop:
                items.append(item)
            while True:  # everything queued meanwhile goes out together
                try:
                    item = take()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    items.append(item)
            if items:
                try:
                    with gc_paused():  # one flush's replies (eventsource.gcpause)
                        self._send(items)
                except Exception:  # a bug: log it, keep answering the others
                    log.exception("append server %s: replies not sent", self.server_id)
                    self.backlog.finished_all([t for _, _, t in items if t is not None])
            if stop:
                return

    def _send(self, items: list[_Item]) -> None:
        server = self.server_id
        batches: dict[tuple[str, str], list[list[Any]]] = {}
        finished: list[Tracked] = []
        fenced = False
        for request, outcome, tracked in items:
            if tracked is not None:
                finished.append(tracked)
            result: AppendResult | None = None
            if isinstance(outcome, BaseException):
                error: BaseException | None = outcome
            else:  # done (its callback queued it): read without its lock (eventsource.futures)
                done = done_outcome(outcome)
                if done is None:  # expired while it waited: never executed
                    error = expired_error(request.request_id, request.aggregate_id)
                else:
                    result, error = done
            if request.version == 1:  # an older client: one record per request
                reply: wire.Reply = (
                    wire.AppendReply(request.request_id, server, result.version, result.positions)
                    if result is not None and error is None
                    else wire.error_reply(request.request_id, server, _error(error))
                )
                self._produce(request.reply_topic, request.request_id, wire.encode_reply(reply))
            else:
                if result is not None and error is None:
                    entry = wire.result_entry(request.request_id, result)
                else:
                    reply = wire.error_reply(request.request_id, server, _error(error))
                    entry = wire.error_entry(reply)
                key = (request.reply_topic, request.client)
                batch = batches.get(key)
                if batch is None:
                    batches[key] = [entry]
                else:
                    batch.append(entry)
            fenced = fenced or isinstance(error, FencedError)
        for (topic, client), entries in batches.items():
            for start in range(0, len(entries), MAX_BATCH):
                value = wire.encode_batch(server, entries[start : start + MAX_BATCH])
                self._produce(topic, client, value, wire.CLIENT_HEADER)
        self.backlog.finished_all(finished)
        if fenced:
            log.error(
                "append server %s: the store is fenced by a newer owner; stopping so the "
                "requests go to the new owner's server",
                server,
            )
            self.on_fenced()

    def _produce(
        self, topic: str, key: str, value: bytes, header: str = wire.REQUEST_ID_HEADER
    ) -> None:
        encoded = key.encode("utf-8")
        for _ in range(50):
            try:
                self.producer.produce(
                    topic,
                    key=encoded,
                    value=value,
                    headers=[(header, encoded)],
                    on_delivery=_log_failed_reply,
                )
                return
            except BufferError:  # the producer's queue is full: let it drain, then again
                self.producer.poll(0.1)
            except KafkaException as exc:
                # The clients will time out with UncertainCommitError, which stays true.
                log.error("append server %s cannot reply (%s): %s", self.server_id, key, exc)
                return
        log.error("append server %s cannot reply (%s): producer queue full", self.server_id, key)


def _error(error: BaseException | None) -> BaseException:
    """The error to answer with (a future done with neither result nor error is a bug)."""
    return error if error is not None else RuntimeError("the append ended without a result")


def _log_failed_reply(err: KafkaError | None, msg: Message) -> None:
    if err is not None:
        log.error("reply to %s not delivered: %s", msg.key(), err)
