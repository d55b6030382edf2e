"""Local FTP and FTPS (explicit TLS) servers on pyftpdlib, started once per test session on free 127.0.0.1 ports.

Each server runs its own IO loop in a thread of the test process. Each test target gets a user of its own with an
empty home folder. Some user names make the server misbehave on purpose (see `Misbehaviour`): drop the data
connection half-way through an upload, read an upload slowly, or answer PASV with another address.

pyftpdlib and pyOpenSSL (for its TLS handler) come from pyproject's [test] extra; the recipe is in the team's
test-server notes.
"""

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pytest

from tests.servers.https_receiver import write_localhost_certificate

PASSWORD = "ftppass"
HOST_NAME = "localhost"
INSTALL_HINT = (
    "the FTP test servers need pyftpdlib and pyOpenSSL: "
    "pip install -c constraints.txt -e '.[test]' (or: pip install pyftpdlib==2.2.0 pyOpenSSL==26.4.0)"
)


class Misbehaviour(Enum):
    NONE = "none"
    CUT_UPLOAD = "cut"  # closes the data connection after the first block, answering 426
    SLOW_UPLOAD = "slow"  # reads an upload one block per SLOW_UPLOAD_PAUSE_SECONDS
    PASV_ELSEWHERE = "pasv"  # answers PASV with a private address (10.0.0.1) instead of its own


PASV_ELSEWHERE_ADDRESS = "10.0.0.1"
SLOW_UPLOAD_PAUSE_SECONDS = 0.1


@dataclass
class FtpServer:
    """A running FTP or FTPS server: where it listens, and what its users hold."""

    protocol: str
    host: str
    port: int
    root: Path
    certificate: Path | None
    _server: object
    _thread: threading.Thread
    _stopped: threading.Event
    # user name → paths of the uploads the server saw complete, relative to the user's home, in order
    received: dict[str, list[str]] = field(default_factory=dict)
    pasv_replies: list[str] = field(default_factory=list)
    misbehaving: dict[str, Misbehaviour] = field(default_factory=dict)
    slowed: threading.Event = field(default_factory=threading.Event)  # a slow upload has started

    def add_user(
        self, misbehaviour: Misbehaviour = Misbehaviour.NONE, *, permissions: str = "elradfmwMT"
    ) -> tuple[str, Path]:
        """A fresh user with an empty home folder: (user name, home)."""
        name = f"user-{uuid.uuid4().hex[:10]}"
        home = self.root / name
        home.mkdir()
        self._server.handler.authorizer.add_user(name, PASSWORD, str(home), perm=permissions)
        self.misbehaving[name] = misbehaviour
        return name, home

    def config(self, username: str, **overrides) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "username": username,
            "password": PASSWORD,
            "protocol": self.protocol,
            **overrides,
        }

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(10)


def files_under(home: Path) -> dict[str, bytes]:
    """Every file under `home` (hidden ones included): relative path → bytes."""
    found = {}
    for folder, _, names in os.walk(home):
        for name in names:
            path = Path(folder) / name
            found[path.relative_to(home).as_posix()] = path.read_bytes()
    return found


def _handler_classes(protocol: str, certificate: Path | None, key: Path | None):
    try:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler
    except ImportError as error:
        pytest.fail(f"{INSTALL_HINT} ({error})")
    if protocol == "ftps":
        try:
            import OpenSSL  # noqa: F401  (TLS_FTPHandler needs it)
        except ImportError as error:
            pytest.fail(f"{INSTALL_HINT} ({error})")

    class ScriptedDTPHandler(DTPHandler):
        def handle_read(self) -> None:
            misbehaviour = self.cmd_channel.server.apertur.misbehaving.get(self.cmd_channel.username)
            if misbehaviour is Misbehaviour.CUT_UPLOAD and self.tot_bytes_received:
                self._resp = ("426 Connection closed; transfer aborted.", lambda *args: None)
                self.close()
                return
            super().handle_read()
            if misbehaviour is Misbehaviour.SLOW_UPLOAD and not self._closed:
                # One read (at most 64 KiB) per pause: every send the client makes progresses within any per-call
                # timeout, only the whole upload takes long.
                self.cmd_channel.server.apertur.slowed.set()
                self.del_channel()
                self.ioloop.call_later(SLOW_UPLOAD_PAUSE_SECONDS, self._resume_reading)

        def _resume_reading(self) -> None:
            if not self._closed:
                self.add_channel(events=self.ioloop.READ)

        handle_read_event = handle_read  # DTPHandler aliases it to its own handle_read

    class ScriptedHandlerMixin:
        dtp_handler = ScriptedDTPHandler
        authorizer = DummyAuthorizer()
        auth_failed_timeout = 0  # pyftpdlib answers a wrong password after 3 s; the tests need no such delay

        def on_login(self, username: str) -> None:
            if self.server.apertur.misbehaving.get(username) is Misbehaviour.PASV_ELSEWHERE:
                self.masquerade_address = PASV_ELSEWHERE_ADDRESS

        def respond(self, response: str, *args, **kwargs) -> None:
            if response.startswith("227"):
                self.server.apertur.pasv_replies.append(response)
            super().respond(response, *args, **kwargs)

        def close(self) -> None:
            if self.server.apertur.misbehaving.get(self.username) is Misbehaviour.SLOW_UPLOAD:
                # The slow reader outlives its control connection, as on a stuck server: only the client can end it.
                self.data_channel = None
            super().close()

        def on_file_received(self, file: str) -> None:
            home = Path(self.fs.root)
            received = self.server.apertur.received.setdefault(self.username, [])
            received.append(Path(file).relative_to(home).as_posix())

    if protocol == "ftps":

        class Handler(ScriptedHandlerMixin, TLS_FTPHandler):
            certfile, keyfile = str(certificate), str(key)
            tls_control_required = True
            tls_data_required = True

        # The TLS handler has its own data handler (TLS_DTPHandler): keep it, scripted behaviour is for plain FTP.
        Handler.dtp_handler = TLS_FTPHandler.dtp_handler
    else:

        class Handler(ScriptedHandlerMixin, FTPHandler):
            pass

    return Handler


def start_ftp_server(directory: Path, protocol: str = "ftp") -> FtpServer:
    """An FTP server (`protocol` "ftp") or an FTPS one ("ftps"); reached as `localhost`, which a certificate names."""
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

    certificate = key = None
    if protocol == "ftps":
        certificate, key = write_localhost_certificate(directory)
    handler = _handler_classes(protocol, certificate, key)
    root = directory / "homes"
    root.mkdir()
    ioloop = IOLoop()
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=ioloop)
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            ioloop.loop(timeout=0.05, blocking=False)  # one poll: `stopped` is seen within 50 ms
        server.close_all()

    thread = threading.Thread(target=serve, daemon=True, name=f"{protocol}-server")
    running = FtpServer(
        protocol=protocol,
        host=HOST_NAME,
        port=server.address[1],
        root=root,
        certificate=certificate,
        _server=server,
        _thread=thread,
        _stopped=stopped,
    )
    server.apertur = running
    thread.start()
    return running


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory) -> Iterator[FtpServer]:
    server = start_ftp_server(tmp_path_factory.mktemp("ftp"), "ftp")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory) -> Iterator[FtpServer]:
    server = start_ftp_server(tmp_path_factory.mktemp("ftps"), "ftps")
    yield server
    server.stop()
