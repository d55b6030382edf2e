"""Real local HTTP servers for webhook deliveries: one that records requests (tests await requests instead of
sleeping), and one whose answer body is long or endless."""

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers.raw_http import read_request


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that gave up on a kept-alive connection (a timeout, a deadline) is expected, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WebhookReceiver:
    """Answers every POST with `respond(request) -> status` (default 200) and `answer_headers`, and records it.
    Keeps connections alive (HTTP/1.1), as most receivers do, and counts them."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.respond: Callable[[ReceivedRequest], int] = lambda request: 200
        self.answer_headers: dict[str, str] = {}
        self.connections = 0  # TCP connections accepted
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The answer goes out as two writes (head, body): with Nagle's algorithm the body would wait for the
            # client's delayed ACK, ~40 ms per request on a kept-alive connection.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                with receiver._changed:
                    receiver.connections += 1
                super().setup()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = ReceivedRequest(self.path, dict(self.headers.items()), self.rfile.read(length))
                status = receiver.respond(request)
                with receiver._changed:
                    receiver.requests.append(request)
                    receiver._changed.notify_all()
                self.send_response(status)
                for name, value in receiver.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for_requests(self, count: int, timeout: float = 15) -> list[ReceivedRequest]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} webhook requests within {timeout}s, got {len(self.requests)}")
            return list(self.requests)


class LongAnswerServer:
    """Answers every request with 200 and a body that is `declared` bytes long (Content-Length) or, with
    `declared=None`, chunked and endless; it sends the body until the client goes away (with `withheld`, it sends
    none of it and waits). Counts connections."""

    def __init__(self, *, declared: int | None, withheld: bool = False) -> None:
        self.declared, self.withheld = declared, withheld
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # stopped
            self.accepted += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                while read_request(connection) is not None:
                    self._answer(connection)
            except OSError:
                return  # the client closed the connection: what it should do

    def _answer(self, connection: socket.socket) -> None:
        block = b"x" * 65536
        if self.declared is None:
            connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                connection.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.declared)
        if self.withheld:
            connection.recv(1)  # until the client closes the connection
            return
        left = self.declared
        while left > 0:
            connection.sendall(block[:left])
            left -= len(block)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
