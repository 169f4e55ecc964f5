"""The router's clients, one per owner member: bounded, and closed once a member is gone.

Every :class:`~eventsource.store.routing.RemoteEventStore` holds a consumer, a producer and a
thread. Members come and go (a pod name per restart), so keeping one client per member name
ever seen would leak them. The pool keeps at most ``max_clients`` (least recently used go
first) and drops those of members that own no partition any more; a client is closed when
it is dropped, or, if a call is using it then, when that call ends (through ``close_later``:
a call may end on the client's own reply thread, which must not wait for itself).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

from eventsource.store.routing import RemoteEventStore

__all__ = ["ClientPool"]


class ClientPool:
    """``RemoteEventStore`` per member name, made by ``factory`` on first use."""

    def __init__(
        self,
        factory: Callable[[str], RemoteEventStore],
        *,
        max_clients: int = 16,
        prune_every: float = 2.0,
        close_later: Callable[[RemoteEventStore], None] | None = None,
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        self._factory = factory
        self.max_clients = max_clients
        self._prune_every = prune_every
        self._pruned_at = time.monotonic()
        self._clients: collections.OrderedDict[str, RemoteEventStore] = collections.OrderedDict()
        self._busy: dict[RemoteEventStore, int] = {}
        self._lock = threading.Lock()
        self._close_later = close_later or (lambda client: client.close())

    @property
    def members(self) -> list[str]:
        """Members that have an open client, least recently used first."""
        with self._lock:
            return list(self._clients)

    @property
    def prune_due(self) -> bool:
        """Whether :meth:`retain` would look at the members again now."""
        return time.monotonic() - self._pruned_at >= self._prune_every

    def has(self, member: str) -> bool:
        """Whether the member has an open client (using it creates none). Takes no lock."""
        return member in self._clients

    @contextmanager
    def use(self, member: str) -> Iterator[RemoteEventStore]:
        """The member's client, held open for the duration of the block."""
        client = self.acquire(member)
        try:
            yield client
        finally:
            self.release(member, client)

    def acquire(self, member: str) -> RemoteEventStore:
        """The member's client, held open until :meth:`release`.

        A new client is started outside the lock (it takes a while), so calls through the
        members' open clients never wait for it.
        """
        with self._lock:
            client = self._clients.get(member)
        spare = None
        if client is None:
            spare = self._factory(member)
        with self._lock:
            client = self._clients.get(member)
            if client is None:
                assert spare is not None
                client, spare = spare, None
                self._clients[member] = client
            self._clients.move_to_end(member)
            self._busy[client] = self._busy.get(client, 0) + 1
            dropped = self._drop(list(self._clients)[: -self.max_clients])
        if spare is not None:  # another call started one first
            dropped.append(spare)
        self._close(dropped)
        return client

    def release(self, member: str, client: RemoteEventStore) -> None:
        """End one use of ``client``; closes it (through ``close_later``) if it was dropped."""
        with self._lock:
            self._busy[client] -= 1
            idle = not self._busy[client]
            if idle:
                del self._busy[client]
            orphan = idle and self._clients.get(member) is not client
        if orphan:
            self._close_later(client)

    def retain(self, members: Collection[str], *, force: bool = False) -> None:
        """Close the clients of members not in ``members`` (at most every ``prune_every`` s)."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._pruned_at < self._prune_every:
                return
            self._pruned_at = now
            dropped = self._drop([m for m in self._clients if m not in members])
        self._close(dropped)

    def close(self) -> None:
        with self._lock:
            dropped = self._drop(list(self._clients))
        self._close(dropped)

    def _drop(self, members: list[str]) -> list[RemoteEventStore]:
        """Forget ``members``' clients (under the lock); the idle ones to close now."""
        clients = [self._clients.pop(m) for m in members]
        return [c for c in clients if c not in self._busy]

    @staticmethod
    def _close(clients: list[RemoteEventStore]) -> None:
        for client in clients:
            client.close()
