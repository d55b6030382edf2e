"""A local SFTP server on asyncssh, started from pytest fixtures on a free 127.0.0.1 port.

The server runs its own asyncio loop in a thread of the test process: pure Python, no root, no system user. Each
test target gets a user of its own whose empty home folder is its SFTP root (chroot), logging in with a password,
with public keys, or both. The host key is generated here and can be changed while the server runs, so tests can
pin it and then see it change. Some users make the server misbehave on purpose (see `Misbehaviour`).

Client keys of every kind the ftp type's `privateKey` accepts are made once per test session by `client_keys`.
asyncssh comes from pyproject's [test] extra (`make install-test`).
"""

import asyncio
import enum
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PASSWORD = "sftppass"
PASSPHRASE = "correct horse battery staple"
HOST = "127.0.0.1"
INSTALL_HINT = (
    "the SFTP test server needs asyncssh: make install-test "
    "(or: pip install -c constraints.txt -e '.[test]', or pip install asyncssh==2.24.1)"
)
SLOW_UPLOAD_PAUSE_SECONDS = 0.1


def _asyncssh():
    try:
        import asyncssh
    except ImportError as error:
        pytest.fail(f"{INSTALL_HINT} ({error})")
    return asyncssh


class Misbehaviour(enum.Enum):
    NONE = "none"
    FAIL_UPLOAD = "fail"  # writes half of the first block, then answers the write with "no space left" (SSH_FX_FAILURE)
    CUT_UPLOAD = "cut"  # writes half of the first block, then drops the connection
    READ_ONLY = "read-only"  # refuses to make folders or open files for writing (SSH_FX_PERMISSION_DENIED)
    NO_POSIX_RENAME = "no-posix-rename"  # answers posix-rename@openssh.com with SSH_FX_OP_UNSUPPORTED
    SLOW_UPLOAD = "slow"  # takes one write per SLOW_UPLOAD_PAUSE_SECONDS


@dataclass(frozen=True)
class ClientKey:
    """A client key pair as a user holds it: the private key text they paste into the config, and its public line."""

    kind: str
    private_text: str
    public_line: str
    passphrase: str | None = None


def _client_key(kind: str, private_key, private_format, passphrase: str | None = None) -> ClientKey:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    text = private_key.private_bytes(serialization.Encoding.PEM, private_format, encryption).decode()
    public = private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return ClientKey(kind, text, public.decode(), passphrase)


def make_client_keys() -> dict[str, ClientKey]:
    """One key of each form a user may paste: OpenSSH Ed25519 and ECDSA, PEM RSA, and passphrase-protected ones."""
    openssh, traditional = serialization.PrivateFormat.OpenSSH, serialization.PrivateFormat.TraditionalOpenSSL
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "ed25519": _client_key("ed25519", ed25519.Ed25519PrivateKey.generate(), openssh),
        "ecdsa": _client_key("ecdsa", ec.generate_private_key(ec.SECP256R1()), openssh),
        "rsa_pem": _client_key("rsa_pem", rsa_key, traditional),
        "ed25519_protected": _client_key(
            "ed25519_protected", ed25519.Ed25519PrivateKey.generate(), openssh, PASSPHRASE
        ),
        "rsa_pem_protected": _client_key("rsa_pem_protected", rsa_key, traditional, PASSPHRASE),
    }


@dataclass
class _User:
    home: Path
    password: str | None
    authorized_keys: str
    misbehaviour: Misbehaviour


@dataclass
class SftpServer:
    """A running SFTP server: where it listens, its host key, and what its users hold."""

    host: str
    port: int
    root: Path
    host_key: object  # asyncssh.SSHKey
    _loop: asyncio.AbstractEventLoop
    _acceptor: object
    _thread: threading.Thread
    users: dict[str, _User] = field(default_factory=dict)
    # user name → paths of files the server closed after writing, relative to the user's home, in order
    received: dict[str, list[str]] = field(default_factory=dict)
    # user name → ("posix-rename" or "rename", old path, new path) for each rename the server carried out
    renames: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    slowed: threading.Event = field(default_factory=threading.Event)  # a slow upload has started
    # user names in the order clients asked to log in as them (before any credential is checked): one per connection
    logins: list[str] = field(default_factory=list)
    _connections: set = field(default_factory=set)  # the clients' connections open now (asyncssh.SSHServerConnection)

    @property
    def host_key_fingerprint(self) -> str:
        """As `ssh-keygen -lf` prints it: `SHA256:<base64 without padding>`."""
        return self.host_key.get_fingerprint("sha256")

    def add_user(
        self,
        misbehaviour: Misbehaviour = Misbehaviour.NONE,
        *,
        password: str | None = PASSWORD,
        keys: Iterable[ClientKey] = (),
    ) -> tuple[str, Path]:
        """A fresh user with an empty home folder: (user name, home). `password=None`: keys only."""
        name = f"user-{uuid.uuid4().hex[:10]}"
        home = self.root / name
        home.mkdir()
        authorized = "".join(f"{key.public_line}\n" for key in keys)
        self.users[name] = _User(home, password, authorized, misbehaviour)
        return name, home

    def config(self, username: str, **overrides) -> dict:
        return {
            "protocol": "sftp",
            "host": self.host,
            "port": self.port,
            "username": username,
            "password": PASSWORD,
            **overrides,
        }

    def change_host_key(self) -> None:
        """Answer new connections with a new host key, as a reinstalled server (or an impostor) would."""
        self.host_key = _asyncssh().generate_private_key("ssh-ed25519")
        self._call(self._acceptor.update, server_host_keys=[self.host_key])

    def drop_connections(self) -> None:
        """Close every client's connection from the server's side, as a server that restarts or ends idle sessions
        does."""

        def close_all() -> None:
            for connection in list(self._connections):
                connection.close()

        self._call(close_all)

    def _call(self, function, *args, **kwargs) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                function(*args, **kwargs)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(10), "the SFTP server's loop did not answer"

    def stop(self) -> None:
        async def close() -> None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            # Connections a test left open (a deadline test's slow upload) end with the server.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def files_under(home: Path) -> dict[str, bytes]:
    """Every file under `home` (hidden ones included): relative path → bytes."""
    found = {}
    for folder, _, names in os.walk(home):
        for name in names:
            path = Path(folder) / name
            found[path.relative_to(home).as_posix()] = path.read_bytes()
    return found


def _server_classes(running: SftpServer):
    asyncssh = _asyncssh()

    class Server(asyncssh.SSHServer):
        def connection_made(self, connection) -> None:
            self.connection = connection
            running._connections.add(connection)

        def connection_lost(self, exc) -> None:
            running._connections.discard(self.connection)

        def begin_auth(self, username: str) -> bool:
            running.logins.append(username)
            user = running.users.get(username)
            if user is not None and user.authorized_keys:
                self.connection.set_authorized_keys(asyncssh.import_authorized_keys(user.authorized_keys))
            return True  # every login needs a password or a key

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            user = running.users.get(username)
            return user is not None and user.password is not None and password == user.password

        def public_key_auth_supported(self) -> bool:
            return True

    class UserSftpServer(asyncssh.SFTPServer):
        def __init__(self, channel) -> None:
            self.username = channel.get_extra_info("username")
            self.user = running.users[self.username]
            self.written: dict[int, str] = {}  # id(file) → path, for files opened to write
            super().__init__(channel, chroot=str(self.user.home).encode())

        def _relative(self, path: bytes) -> str:
            local = Path(self.map_path(path).decode())
            return local.relative_to(self.user.home.resolve()).as_posix()

        def mkdir(self, path: bytes, attrs):
            if self.user.misbehaviour is Misbehaviour.READ_ONLY:
                raise asyncssh.SFTPPermissionDenied("Permission denied")
            return super().mkdir(path, attrs)

        def open(self, path: bytes, pflags: int, attrs):
            writing = pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT)
            if writing and self.user.misbehaviour is Misbehaviour.READ_ONLY:
                raise asyncssh.SFTPPermissionDenied("Permission denied")
            opened = super().open(path, pflags, attrs)
            if writing:
                self.written[id(opened)] = self._relative(path)
            return opened

        async def write(self, file_obj, offset: int, data: bytes) -> int:
            misbehaviour = self.user.misbehaviour
            if misbehaviour in (Misbehaviour.FAIL_UPLOAD, Misbehaviour.CUT_UPLOAD):
                super().write(file_obj, offset, data[: len(data) // 2])
                file_obj.flush()
                if misbehaviour is Misbehaviour.CUT_UPLOAD:
                    self.connection.abort()
                raise asyncssh.SFTPFailure("No space left on device")
            if misbehaviour is Misbehaviour.SLOW_UPLOAD:
                running.slowed.set()
                await asyncio.sleep(SLOW_UPLOAD_PAUSE_SECONDS)
            return super().write(file_obj, offset, data)

        def close(self, file_obj) -> None:
            path = self.written.pop(id(file_obj), None)
            super().close(file_obj)
            if path is not None:
                running.received.setdefault(self.username, []).append(path)

        def rename(self, oldpath: bytes, newpath: bytes) -> None:
            super().rename(oldpath, newpath)  # SFTP v3: refuses to replace an existing file
            self._record_rename("rename", oldpath, newpath)

        def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
            if self.user.misbehaviour is Misbehaviour.NO_POSIX_RENAME:
                raise asyncssh.SFTPOpUnsupported("posix-rename@openssh.com not supported")
            super().posix_rename(oldpath, newpath)
            self._record_rename("posix-rename", oldpath, newpath)

        def _record_rename(self, how: str, oldpath: bytes, newpath: bytes) -> None:
            renames = running.renames.setdefault(self.username, [])
            renames.append((how, self._relative(oldpath), self._relative(newpath)))

    return Server, UserSftpServer


def start_sftp_server(directory: Path) -> SftpServer:
    """An SFTP server on a free 127.0.0.1 port, with a new Ed25519 host key; users' homes under `directory`."""
    asyncssh = _asyncssh()
    root = directory / "homes"
    root.mkdir()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="sftp-server")
    running = SftpServer(
        host=HOST,
        port=0,
        root=root,
        host_key=asyncssh.generate_private_key("ssh-ed25519"),
        _loop=loop,
        _acceptor=None,
        _thread=thread,
    )
    server_class, sftp_class = _server_classes(running)
    thread.start()

    async def listen():
        return await asyncssh.listen(
            HOST,
            0,
            server_host_keys=[running.host_key],
            server_factory=server_class,
            sftp_factory=sftp_class,
            allow_scp=False,
            login_timeout=30,
        )

    running._acceptor = asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    running.port = running._acceptor.get_port()
    return running


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory) -> Iterator[SftpServer]:
    server = start_sftp_server(tmp_path_factory.mktemp("sftp"))
    yield server
    server.stop()


@pytest.fixture
def own_sftp_server(tmp_path) -> Iterator[SftpServer]:
    """A server of the test's own, for tests that change its host key."""
    server = start_sftp_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client_keys() -> dict[str, ClientKey]:
    return make_client_keys()
