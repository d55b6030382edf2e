"""Connections a delivery worker thread keeps open for its next attempt to the same destination (docs/destinations.md,
the sftp row's "Kept connections").

Kept per thread: the delivery engine's worker threads are long-lived and run one attempt at a time, so a connection
is never shared by two attempts. An attempt takes its connection out of the cache and puts it back only when it
succeeded: a connection whose attempt failed is closed, never seen again. Bounded per thread (the least recently
used one is closed first). One idle for longer than allowed is closed: by the next `take` of its thread, or by the
reaper thread, so that a thread with no more work for that server does not hold its session open. What a thread
keeps is closed when the thread ends.
"""

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from time import monotonic
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


Connection = TypeVar("Connection", bound=Closable)


class _ThreadsConnections(Generic[Connection]):
    """One thread's connections, least recently put back first: key → (put back at, connection). The lock is
    shared with the reaper only."""

    def __init__(self) -> None:
        self.connections: OrderedDict[Hashable, tuple[float, Connection]] = OrderedDict()
        self.lock = threading.Lock()
        # Closed when the thread ends and its thread-local data goes (a worker stopped, a test's threads).
        weakref.finalize(self, _close_every, self.connections)

    def close_idle(self, idle_limit: float) -> None:
        now = monotonic()
        with self.lock:
            idle = [key for key, (since, _) in self.connections.items() if now - since > idle_limit]
            closing = [self.connections.pop(key)[1] for key in idle]
        for connection in closing:
            connection.close()


class KeptConnections(Generic[Connection]):
    def __init__(self, capacity: int, *, idle_limit: Callable[[], float] | None = None) -> None:
        """`idle_limit`, when given, starts a reaper with the first kept connection, which closes what every thread
        has kept idle for longer."""
        self.capacity = capacity
        self.idle_limit = idle_limit
        self._local = threading.local()
        self._threads: weakref.WeakSet[_ThreadsConnections[Connection]] = weakref.WeakSet()
        self._threads_lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def _mine(self) -> _ThreadsConnections[Connection]:
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = _ThreadsConnections()
            with self._threads_lock:
                self._threads.add(kept)
        return kept

    def take(self, key: Hashable, *, idle_limit: float) -> Connection | None:
        """The connection this thread kept under `key`, now the caller's to use and to close or put back; None when
        there is none or it sat idle for more than `idle_limit` seconds (closed then, as is every other one this
        thread kept that idled too long)."""
        mine = self._mine()
        mine.close_idle(idle_limit)
        with mine.lock:
            found = mine.connections.pop(key, None)
        return None if found is None else found[1]

    def put_back(self, key: Hashable, connection: Connection) -> None:
        """Keep `connection` for this thread's next attempt under `key`; over capacity, the least recently used one
        is closed."""
        mine = self._mine()
        closing = []
        with mine.lock:
            replaced = mine.connections.pop(key, None)
            if replaced is not None and replaced[1] is not connection:
                closing.append(replaced[1])
            mine.connections[key] = (monotonic(), connection)
            while len(mine.connections) > self.capacity:
                closing.append(mine.connections.popitem(last=False)[1][1])
        for old in closing:
            old.close()
        self._start_reaper()

    def close_idle(self) -> None:
        """Close what every thread has kept idle for longer than `idle_limit` allows."""
        if self.idle_limit is None:
            return
        limit = self.idle_limit()
        with self._threads_lock:
            threads = list(self._threads)
        for kept in threads:
            kept.close_idle(limit)

    def close_all(self) -> None:
        """Close every connection this thread keeps."""
        mine = self._mine()
        with mine.lock:
            _close_every(mine.connections)

    def _start_reaper(self) -> None:
        if self.idle_limit is None or (self._reaper is not None and self._reaper.is_alive()):
            return
        with self._threads_lock:
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap, name="apertur-kept-connections", daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        # At least every second, so a connection is closed within a second of its idle limit, whatever that is.
        while True:
            time.sleep(min(max(self.idle_limit() / 2, 0.1), 1.0))  # started only with an idle_limit
            self.close_idle()


def _close_every(connections: "OrderedDict[Hashable, tuple[float, Closable]]") -> None:
    while connections:
        _, (_, connection) = connections.popitem(last=False)
        connection.close()
