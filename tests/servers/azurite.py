"""A local Azure Blob service (Azurite), started once per test session on a free 127.0.0.1 port, and a proxy that
breaks requests on its way to it.

Azurite is an npm package; `make install-test` installs the pinned version into the virtualenv's `node/` folder
(the recipe, with its gotchas, is in the team's test-server notes). It runs with in-memory storage capped at
512 MB, in a temporary working folder (`--location` cannot go with `--inMemoryPersistence`), without telemetry,
and with `--skipApiVersionCheck`: azure-storage-blob sends a newer API version than Azurite 3.35.0 knows.
Readiness: an anonymous listing of the account is answered 403 (up, and refusing it). A second one serves HTTPS with a
self-signed certificate for `localhost` (the name it is reached by), for the outbound CA bundle.
"""

import base64
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from tests.servers.https_receiver import HOST_NAME, write_localhost_certificate
from tests.servers.raw_http import read_request
from tests.servers.s3 import free_port
from tests.waiting import wait_until

AZURITE_BIN = Path(sys.prefix) / "node" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = "Azurite (the Azure Blob test server) is not installed: run make install-test (needs Node.js and npm)"
ACCOUNT = "devstoreaccount1"
# Azurite's published development account key (https://github.com/Azure/Azurite#default-storage-account).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = base64.b64encode(bytes(64)).decode()  # well-formed, but not the account's
READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30


@dataclass
class AzuriteServer:
    """A running Azurite blob service: its endpoint, connection strings for it, and what it holds."""

    port: int
    process: subprocess.Popen
    log_path: Path
    certificate: Path | None = None  # HTTPS with this self-signed certificate; plain HTTP without
    _client: BlobServiceClient | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """Path-style, as Azurite serves its account."""
        if self.certificate:
            return f"https://{HOST_NAME}:{self.port}/{ACCOUNT}"
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def connection_string(self, *, key: str = ACCOUNT_KEY, endpoint: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={endpoint or self.endpoint};"
        )

    def sas_connection_string(self, sas_token: str, *, endpoint: str | None = None) -> str:
        return f"BlobEndpoint={endpoint or self.endpoint};SharedAccessSignature={sas_token}"

    def client(self) -> BlobServiceClient:
        if self._client is None:
            self._client = BlobServiceClient(
                self.endpoint,
                credential=AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY),
                retry_total=0,
                connection_verify=str(self.certificate) if self.certificate else True,
            )
        return self._client

    def create_container(self) -> str:
        """A fresh, empty container, so tests never see each other's blobs."""
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_container(name)
        return name

    def blobs(self, container: str) -> dict[str, bytes]:
        """The committed blobs of `container`: name → bytes."""
        client = self.client().get_container_client(container)
        return {blob.name: client.download_blob(blob.name).readall() for blob in client.list_blobs()}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def start_azurite(directory: Path, *, tls: bool = False) -> AzuriteServer:
    if not AZURITE_BIN.exists():
        pytest.fail(f"{INSTALL_HINT} ({AZURITE_BIN} is missing)")
    certificate, key = write_localhost_certificate(directory) if tls else (None, None)
    port = free_port()
    log_path = directory / "azurite.log"
    arguments = [
        str(AZURITE_BIN),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--extentMemoryLimit",
        "512",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        *(["--cert", str(certificate), "--key", str(key)] if tls else []),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(arguments, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    server = AzuriteServer(port=port, process=process, log_path=log_path, certificate=certificate)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(certificate) if tls else True

    def refuses_an_anonymous_listing() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"Azurite exited with {process.returncode}:\n{server.log_tail()}")
        try:
            return session.get(f"{server.endpoint}?comp=list", timeout=2).status_code == 403
        except requests.RequestException:
            return False

    try:
        wait_until(refuses_an_anonymous_listing, timeout=READY_TIMEOUT_SECONDS, interval=0.1)
    except AssertionError as error:
        server.stop()
        raise AssertionError(f"Azurite did not become ready: {error}\n{server.log_tail()}") from error
    return server


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory) -> Iterator[AzuriteServer]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_tls_server(tmp_path_factory) -> Iterator[AzuriteServer]:
    server = start_azurite(tmp_path_factory.mktemp("azurite-tls"), tls=True)
    yield server
    server.stop()


class BreakingProxy:
    """An HTTP proxy on 127.0.0.1 in front of Azurite that can break requests, counted from 1 across connections.

    A request in `cut` gets only half its body forwarded, then both connections are closed: a transfer cut half-way.
    A request in `corrupt` gets one byte of its body flipped on the way. `cut_all` cuts every request. Each request
    is forwarded on a connection of its own (`Connection: close`), so a client simply opens a new one for the next.
    """

    def __init__(
        self, upstream_port: int, *, cut: set[int] = frozenset(), corrupt: set[int] = frozenset(), cut_all=False
    ) -> None:
        self.upstream_port = upstream_port
        self.cut, self.corrupt, self.cut_all = set(cut), set(corrupt), cut_all
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with client:
            client.settimeout(30)
            try:
                request = _read_request(client)
            except OSError:
                return
            if request is None:
                return
            head, body = request
            with self._lock:
                self.requests.append(head.split(b"\r\n", 1)[0].decode())
                number = len(self.requests)
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as upstream:
                if self.cut_all or number in self.cut:
                    upstream.sendall(head + body[: len(body) // 2])
                    return
                if number in self.corrupt and body:
                    body = body[: len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]) + body[len(body) // 2 + 1 :]
                upstream.sendall(head + body)
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)


def _read_request(connection: socket.socket) -> tuple[bytes, bytes] | None:
    """One request: its head (rewritten to close the connection after the answer) and its body."""
    request = read_request(connection)
    if request is None:
        return None
    lines, body = request
    kept = [line for line in lines if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n", body
