"""The plain-script baseline of bench/fanout.py: the same files pushed to the same four servers with the client
libraries Apertur's backends use (boto3, paramiko, requests), with the same concurrency, and nothing else: no
staging, no database, no signatures, no temporary names, no folders made per image.

Each destination gets `per_destination` threads taking files from its own queue, as Apertur's worker runs at most
APERTUR_DESTINATION_CONCURRENCY attempts per destination. Clients are made before the clock starts (Apertur's
worker was warmed up the same way). `connection_per_file` opens a new SSH connection / HTTP session for every file,
as Apertur's SFTP, WebDAV and webhook backends do for every delivery; S3 keeps one client per thread either way, as
Apertur's S3 backend does (docs/benchmarks.md "To S3").
"""

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import paramiko
import requests
from botocore.config import Config

KINDS = ("s3", "sftp", "webdav", "webhook")
S3_ACCESS_KEY = "testing"  # moto accepts any
S3_SECRET_KEY = "testingsecret"
S3_REGION = "us-east-1"


@dataclass
class Targets:
    """Where the four servers listen, as their helpers reported it (bench/fanout_servers.py)."""

    s3_endpoint: str
    bucket: str
    sftp: dict[str, Any]
    webdav: dict[str, Any]
    webhook_url: str


def s3_client(targets: Targets):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=targets.s3_endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, proxies={}),
    )


class S3Pusher:
    def __init__(self, targets: Targets) -> None:
        self.client, self.bucket = s3_client(targets), targets.bucket

    def push(self, path: Path, prefix: str) -> None:
        with path.open("rb") as stream:
            self.client.put_object(
                Bucket=self.bucket, Key=f"{prefix}/{path.name}", Body=stream, ContentType="image/jpeg"
            )

    def close(self) -> None:
        self.client.close()


class SftpPusher:
    def __init__(self, targets: Targets) -> None:
        where = targets.sftp
        self.transport = paramiko.Transport(socket.create_connection((where["host"], where["port"]), timeout=30))
        self.transport.start_client(timeout=30)
        if self.transport.get_remote_server_key().fingerprint != where["fingerprint"]:
            raise SystemExit("the SFTP server presented another host key")
        self.transport.auth_password(where["username"], where["password"])
        self.sftp = paramiko.SFTPClient.from_transport(self.transport)

    def push(self, path: Path, prefix: str) -> None:
        with path.open("rb") as stream:
            self.sftp.putfo(stream, f"{prefix}/{path.name}")  # pipelined 32 KiB writes, then a stat to confirm

    def close(self) -> None:
        self.sftp.close()
        self.transport.close()


class WebdavPusher:
    def __init__(self, targets: Targets) -> None:
        self.url = targets.webdav["url"]
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.auth = (targets.webdav["username"], targets.webdav["password"])

    def push(self, path: Path, prefix: str) -> None:
        with path.open("rb") as stream:
            answer = self.session.put(
                f"{self.url}{prefix}/{path.name}", data=stream, headers={"Content-Type": "image/jpeg"}, timeout=60
            )
        answer.raise_for_status()

    def close(self) -> None:
        self.session.close()


class WebhookPusher:
    def __init__(self, targets: Targets) -> None:
        self.url = targets.webhook_url
        self.session = requests.Session()
        self.session.trust_env = False

    def push(self, path: Path, prefix: str) -> None:
        with path.open("rb") as stream:
            answer = self.session.post(
                f"{self.url}/{prefix}",
                data=stream,
                headers={"Content-Type": "image/jpeg", "X-Aptr-Image-Id": path.name},
                timeout=60,
            )
        answer.raise_for_status()

    def close(self) -> None:
        self.session.close()


PUSHERS: dict[str, Callable[[Targets], Any]] = {
    "s3": S3Pusher,
    "sftp": SftpPusher,
    "webdav": WebdavPusher,
    "webhook": WebhookPusher,
}


@dataclass
class BaselineResult:
    seconds: float
    durations: dict[str, list[float]] = field(default_factory=dict)  # kind → seconds per file
    # This process's CPU while the clock ran: the pushes alone, clients and connections being made beforehand.
    pushing_cpu_seconds: float = 0.0


def prepare_folders(targets: Targets, prefix: str) -> None:
    """The folder each file goes into, made on disk beforehand (a script pushing into an existing folder)."""
    (Path(targets.sftp["home"]) / prefix).mkdir()
    (Path(targets.webdav["root"]) / prefix).mkdir()


def run_baseline(
    targets: Targets, files: list[Path], prefix: str, *, per_destination: int, connection_per_file: bool
) -> BaselineResult:
    prepare_folders(targets, prefix)
    result = BaselineResult(seconds=0.0, durations={kind: [] for kind in KINDS})
    queues = {kind: queue.SimpleQueue() for kind in KINDS}
    for kind in KINDS:
        for path in files:
            queues[kind].put(path)
    fresh_per_file = {"sftp", "webdav", "webhook"} if connection_per_file else set()
    pushers = {
        (kind, slot): None if kind in fresh_per_file else PUSHERS[kind](targets)
        for kind in KINDS
        for slot in range(per_destination)
    }
    start = threading.Barrier(len(pushers) + 1)
    errors: list[BaseException] = []

    def work(kind: str, pusher: Any) -> None:
        start.wait()
        try:
            while True:
                try:
                    path = queues[kind].get_nowait()
                except queue.Empty:
                    return
                began = time.perf_counter()
                if pusher is None:
                    fresh = PUSHERS[kind](targets)
                    fresh.push(path, prefix)
                    fresh.close()
                else:
                    pusher.push(path, prefix)
                result.durations[kind].append(time.perf_counter() - began)
        except BaseException as error:
            errors.append(error)
            raise

    threads = [
        threading.Thread(target=work, args=(kind, pusher), name=f"baseline-{kind}-{slot}")
        for (kind, slot), pusher in pushers.items()
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began, cpu_began = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    result.pushing_cpu_seconds = time.process_time() - cpu_began
    for pusher in pushers.values():
        if pusher is not None:
            pusher.close()
    if errors:
        raise SystemExit(f"the baseline failed: {errors[0]!r}")
    return result
