"""The four destination servers of bench/fanout.py, each in a process of its own.

The project's test servers (tests/servers/) are used as libraries: moto_server is already a process of its own
(`start_moto`); the SFTP (asyncssh), WebDAV (wsgidav) and webhook (http.server) servers run in threads of whatever
process starts them, so each gets a helper process here,

    .venv/bin/python bench/fanout_servers.py sftp|webdav|webhook DIRECTORY

which prints one JSON line saying where it listens, then serves until its stdin closes. A server in the
benchmark's own process would compete for its GIL with the client being measured (the plain-script baseline's
threads, the upload threads); in processes of their own they cost the same CPU to both sides of the comparison.

The webhook receiver keeps what it received; `digests PREFIX` on stdin answers (one JSON line) the path,
`X-Aptr-Image-Id` and SHA-256 of every request below PREFIX, and forgets them.
"""

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fanout_baseline import KINDS, Targets, s3_client

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.servers.s3 import S3Server, start_moto  # noqa: E402

BUCKET = "bench"


def serve(kind: str, directory: Path) -> None:
    from tests.servers.sftp import PASSWORD as SFTP_PASSWORD
    from tests.servers.sftp import start_sftp_server
    from tests.servers.webdav import PASSWORD as WEBDAV_PASSWORD
    from tests.servers.webdav import USERNAME as WEBDAV_USERNAME
    from tests.servers.webdav import start_webdav_server
    from tests.servers.webhook_receiver import WebhookReceiver

    receiver = None
    if kind == "sftp":
        server = start_sftp_server(directory)
        username, home = server.add_user()
        where = {
            "host": server.host,
            "port": server.port,
            "username": username,
            "password": SFTP_PASSWORD,
            "home": str(home),
            "fingerprint": server.host_key_fingerprint,
        }
    elif kind == "webdav":
        server = start_webdav_server(directory)
        server.requests = _Forgetful()  # it records every request; a benchmark makes thousands
        # 127.0.0.1 rather than the server's name "localhost", which may resolve to ::1 first.
        where = {
            "url": f"http://127.0.0.1:{server.port}/",
            "root": str(server.root),
            "username": WEBDAV_USERNAME,
            "password": WEBDAV_PASSWORD,
        }
    elif kind == "webhook":
        server = receiver = WebhookReceiver().start()
        where = {"url": server.url}
    else:
        raise SystemExit(f"unknown server kind {kind!r}")
    print(json.dumps(where), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "digests" and receiver is not None:
            print(json.dumps(_take_digests(receiver, argument)), flush=True)
    server.stop()


class _Forgetful(list):
    def append(self, item: Any) -> None:
        pass


def _take_digests(receiver: Any, prefix: str) -> list[dict[str, str | None]]:
    with receiver._changed:  # the lock its handler appends under
        taken = [request for request in receiver.requests if request.path.startswith(prefix)]
        receiver.requests[:] = [request for request in receiver.requests if not request.path.startswith(prefix)]
    return [
        {
            "path": request.path,
            "image_id": request.header("X-Aptr-Image-Id"),
            "sha256": hashlib.sha256(request.body).hexdigest(),
        }
        for request in taken
    ]


@dataclass
class Helper:
    """A server helper process, seen from the benchmark: where it listens (`where`), and how to talk to it."""

    process: subprocess.Popen
    where: dict[str, Any] = field(default_factory=dict)

    def ask(self, command: str) -> Any:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdin.write(command + "\n")
        stdin.flush()
        return json.loads(self.process.stdout.readline())  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                self.process.wait(timeout=30)


def start_helper(kind: str, directory: Path, log: IO[bytes]) -> Helper:
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, __file__, kind, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = process.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise SystemExit(f"the {kind} server did not start; see its log")
    return Helper(process=process, where=json.loads(line))


class Stores:
    """The four destination servers: moto_server, and the helpers of bench/fanout_servers.py."""

    def __init__(self, scratch: Path, log) -> None:
        moto_directory = scratch / "moto"
        moto_directory.mkdir()
        self.moto: S3Server = start_moto(moto_directory)
        self.helpers: dict[str, Helper] = {}
        for kind in ("sftp", "webdav", "webhook"):
            self.helpers[kind] = start_helper(kind, scratch / kind, log)
        self.targets = Targets(
            s3_endpoint=self.moto.endpoint,
            bucket=BUCKET,
            sftp=self.helpers["sftp"].where,
            webdav=self.helpers["webdav"].where,
            webhook_url=self.helpers["webhook"].where["url"],
        )
        self.s3 = s3_client(self.targets)
        self.s3.create_bucket(Bucket=BUCKET)

    def destinations(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Apertur destination (type, config) per kind (docs/api.md "Destination types"), objects below `apertur/`."""
        sftp, webdav = self.targets.sftp, self.targets.webdav
        return {
            "s3": (
                "s3",
                {
                    "endpoint": self.moto.endpoint,
                    "region": "us-east-1",
                    "bucket": BUCKET,
                    "accessKey": "testing",
                    "secretKey": "testingsecret",
                    "pathTemplate": "apertur/{session_id}/{index}_{image_id}.{ext}",
                },
            ),
            "sftp": (
                "ftp",
                {
                    "protocol": "sftp",
                    "host": sftp["host"],
                    "port": sftp["port"],
                    "username": sftp["username"],
                    "password": sftp["password"],
                    "remotePath": "apertur",
                    "hostKeyFingerprint": sftp["fingerprint"],
                },
            ),
            "webdav": (
                "webdav",
                {
                    "url": webdav["url"],
                    "username": webdav["username"],
                    "password": webdav["password"],
                    "remotePath": "apertur",
                },
            ),
            # The raw bytes as the body, as the baseline POSTs them (the default is multipart).
            "webhook": (
                "webhook",
                {"url": f"{self.targets.webhook_url}/apertur", "secret": "bench-secret", "format": "binary"},
            ),
        }

    def stored(self, kind: str, prefix: str) -> list[tuple[str, str]]:
        """(name, SHA-256) of every object below `prefix`; a webhook request's name is its X-Aptr-Image-Id."""
        if kind == "s3":
            found = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
                for item in page.get("Contents", []):
                    body = self.s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                    found.append((item["Key"], hashlib.sha256(body).hexdigest()))
            return found
        if kind == "webhook":
            return [(item["image_id"], item["sha256"]) for item in self.helpers["webhook"].ask(f"digests /{prefix}")]
        root = Path(self.targets.sftp["home"] if kind == "sftp" else self.targets.webdav["root"]) / prefix
        return [(str(path.relative_to(root)), sha256_file(path)) for path in sorted(root.rglob("*")) if path.is_file()]

    def verify(self, label: str, expected: dict[str, str], prefixes: dict[str, list[str]]) -> int:
        """Every expected object (id → SHA-256) exactly once at every destination, byte for byte, nothing else."""
        for kind in KINDS:
            found = [item for prefix in prefixes[kind] for item in self.stored(kind, prefix)]
            seen: dict[str, str] = {}
            for name, digest in found:
                matches = [identifier for identifier in expected if identifier in name]
                if len(matches) != 1 or matches[0] in seen:
                    raise SystemExit(f"{label}, {kind}: unexpected or duplicate object {name!r}")
                seen[matches[0]] = digest
            if seen != expected:
                wrong = sorted(set(expected) ^ set(seen) | {i for i in seen if seen[i] != expected.get(i)})
                raise SystemExit(f"{label}, {kind}: {len(wrong)} objects missing or different, e.g. {wrong[:3]}")
        return len(expected) * len(KINDS)

    def pids(self) -> dict[str, int]:
        return {"moto": self.moto.process.pid} | {kind: helper.process.pid for kind, helper in self.helpers.items()}

    def stop(self) -> None:
        for helper in self.helpers.values():
            helper.stop()
        self.moto.stop()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]))
