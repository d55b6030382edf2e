"""Connections a delivery worker thread keeps open for its next attempt to the same destination (docs/destinations.md,
the sftp row's "Kept connections").

Kept per thread: the delivery engine's worker threads are long-lived and run one attempt at a time, so a connection
is never shared by two attempts and needs no lock. An attempt takes its connection out of the cache and puts it
back only when it succeeded: a connection whose attempt failed is closed, never seen again. Bounded per thread
(the least recently used one is closed first), and one idle for longer than the caller allows is closed instead of
reused. What a thread keeps is closed when the thread ends.
"""

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from time import monotonic
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


Connection = TypeVar("Connection", bound=Closable)


class _ThreadsConnections(Generic[Connection]):
    """One thread's connections, least recently put back first: key → (put back at, connection)."""

    def __init__(self) -> None:
        self.connections: OrderedDict[Hashable, tuple[float, Connection]] = OrderedDict()
        # Closed when the thread ends and its thread-local data goes (a worker stopped, a test's threads).
        weakref.finalize(self, _close_every, self.connections)


class KeptConnections(Generic[Connection]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._local = threading.local()

    def _mine(self) -> "OrderedDict[Hashable, tuple[float, Connection]]":
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = _ThreadsConnections()
        return kept.connections

    def take(self, key: Hashable, *, idle_limit: float) -> Connection | None:
        """The connection this thread kept under `key`, now the caller's to use and to close or put back; None when
        there is none or it sat idle for more than `idle_limit` seconds (closed then, as is every other one this
        thread kept that idled too long)."""
        connections = self._mine()
        now = monotonic()
        for other, (since, connection) in list(connections.items()):
            if now - since > idle_limit:
                del connections[other]
                connection.close()
        found = connections.pop(key, None)
        return None if found is None else found[1]

    def put_back(self, key: Hashable, connection: Connection) -> None:
        """Keep `connection` for this thread's next attempt under `key`; over capacity, the least recently used one
        is closed."""
        connections = self._mine()
        replaced = connections.pop(key, None)
        if replaced is not None and replaced[1] is not connection:
            replaced[1].close()
        connections[key] = (monotonic(), connection)
        while len(connections) > self.capacity:
            _, (_, oldest) = connections.popitem(last=False)
            oldest.close()

    def close_all(self) -> None:
        """Close every connection this thread keeps."""
        _close_every(self._mine())


def _close_every(connections: "OrderedDict[Hashable, tuple[float, Closable]]") -> None:
    while connections:
        _, (_, connection) = connections.popitem(last=False)
        connection.close()
