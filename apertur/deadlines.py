"""A total deadline for one delivery attempt (or destination test), whatever the protocol.

Socket timeouts bound each read, not the whole exchange: a receiver that drips one header byte every few seconds
never trips them. So every socket opened through the outbound gate (`apertur/http.py`) registers with the
deadline of the attempt running in its thread, and when the deadline passes a timer shuts those sockets down,
which ends any blocking read or write at once. The backend then fails as on any broken connection, and the
delivery engine reports the deadline.
"""

import contextlib
import socket
import threading
import time
import weakref
from types import TracebackType

_current = threading.local()


class Deadline:
    """`with Deadline(seconds):` around one attempt, in the thread that runs it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(self.expires_at - time.monotonic(), 0.0)

    def timeout(self, cap: float) -> float:
        """A per-operation timeout that never outlasts the deadline (at least a sliver, so libraries accept it)."""
        return max(min(cap, self.remaining()), 0.001)

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                _shut(sock)
                return
            self._sockets.add(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> "Deadline":
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._timer.cancel()
        _current.deadline = self._outer


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def current() -> Deadline | None:
    """The deadline of the attempt running in this thread, if any."""
    return getattr(_current, "deadline", None)


def register_socket(sock: socket.socket) -> socket.socket:
    """Put a freshly connected socket under this thread's deadline (a no-op outside an attempt)."""
    deadline = current()
    if deadline is not None:
        deadline.register(sock)
    return sock
