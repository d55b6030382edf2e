"""A worker thread's kept connections (destinations/backends/kept_connections.py): bounded, expiring, closed when
dropped."""

import gc
import threading

from destinations.backends import kept_connections
from destinations.backends.kept_connections import KeptConnections


class Connection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_connection_taken_is_the_callers_until_put_back():
    kept = KeptConnections(capacity=2)
    connection = Connection("a")
    kept.put_back("a", connection)

    taken = kept.take("a", idle_limit=30)
    taken_again = kept.take("a", idle_limit=30)

    assert (taken, taken_again, connection.closed) == (connection, None, False)


def test_over_capacity_the_least_recently_used_connection_is_closed():
    kept = KeptConnections(capacity=2)
    a, b, c = Connection("a"), Connection("b"), Connection("c")
    kept.put_back("a", a)
    kept.put_back("b", b)
    kept.put_back("a", kept.take("a", idle_limit=30))  # used again: b is now the least recently used

    kept.put_back("c", c)

    assert (a.closed, b.closed, c.closed) == (False, True, False)
    assert kept.take("b", idle_limit=30) is None


def test_connections_idle_too_long_are_closed_when_the_thread_next_takes_one(monkeypatch):
    kept = KeptConnections(capacity=4)
    old, other = Connection("old"), Connection("other")
    kept.put_back("old", old)
    kept.put_back("other", other)
    now = kept_connections.monotonic()
    monkeypatch.setattr(kept_connections, "monotonic", lambda: now + 31)

    taken = kept.take("old", idle_limit=30)

    assert taken is None
    assert (old.closed, other.closed) == (True, True)


def test_each_thread_keeps_its_own_and_they_are_closed_when_the_thread_ends():
    kept = KeptConnections(capacity=2)
    connection = Connection("worker's")
    thread = threading.Thread(target=kept.put_back, args=("a", connection))

    thread.start()
    thread.join()
    gc.collect()

    assert kept.take("a", idle_limit=30) is None
    assert connection.closed
