"""Slow HTTP receivers on 127.0.0.1, for the attempt deadline and fairness between tenants.

`drip`: answers one byte of its status line every `interval` seconds (each read is quick, the whole is endless).
`hold`: answers 200 only once `release()` is called. Both stop by themselves after `limit` seconds.
`quick=N`: the first N requests on a connection are answered at once and the connection kept alive, so a client
reuses it for the slow one. `tls_files=(certificate, key)`: HTTPS (tests/servers/https_receiver.py makes them).
"""

import socket
import ssl
import threading
import time
from pathlib import Path

from tests.servers.raw_http import read_request

QUICK_ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "quick"\r\n\r\n'


class TarpitServer:
    def __init__(
        self,
        *,
        mode: str,
        interval: float = 0.3,
        limit: float = 30,
        quick: int = 0,
        tls_files: tuple[Path, Path] | None = None,
    ) -> None:
        self.mode, self.interval, self.limit, self.quick = mode, interval, limit, quick
        self.tls = None
        if tls_files:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls_files)
        self.accepted = 0  # TCP connections
        self.connections = 0  # requests that got the slow answer
        self.completed = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._released = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        # A certificate names a host, so HTTPS is reached as localhost (which resolves to 127.0.0.1 here).
        self.url = f"https://localhost:{port}" if self.tls else f"http://127.0.0.1:{port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self._released.set()

    def wait_for_connections(self, count: int, timeout: float = 10) -> None:
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.connections >= count, timeout):
                raise AssertionError(f"{self.connections} of {count} connections arrived within {timeout}s")

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if self.tls:
                connection = self.tls.wrap_socket(connection, server_side=True)
            with connection:
                connection.settimeout(self.limit)
                for _ in range(self.quick):
                    self._read_request(connection)
                    connection.sendall(QUICK_ANSWER)
                self._read_request(connection)
                self._slow(connection)
        except OSError:
            return  # the client went away

    def _slow(self, connection: socket.socket) -> None:
        with self._arrived:
            self.connections += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._arrived.notify_all()
        try:
            self._answer(connection)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, connection: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        try:
            if self.mode == "drip":
                until = time.monotonic() + self.limit
                for byte in answer:
                    if self._stopped.wait(self.interval) or time.monotonic() > until:
                        return
                    connection.sendall(bytes([byte]))
            else:
                self._released.wait(self.limit)
                connection.sendall(answer)
        except OSError:
            return  # the client gave up: what a deadline is for
        with self._lock:
            self.completed += 1

    @staticmethod
    def _read_request(connection: socket.socket) -> None:
        if read_request(connection, answer_expect=True) is None:
            raise ConnectionResetError("the client closed the connection")

    def stop(self) -> None:
        self._stopped.set()
        self._released.set()
        self.listener.close()
