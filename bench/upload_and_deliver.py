"""Benchmark: concurrent uploads into a live server and the time until each image reaches a webhook.

Starts its own server (`manage.py apertur_run`, embedded worker unless --separate-worker) on a scratch
database, a local webhook receiver, then uploads --images JPEGs from --concurrency threads. Prints upload
latency percentiles, upload throughput and upload→delivered latency, then one JSON line.

    .venv/bin/python bench/upload_and_deliver.py                       # embedded default (SQLite, in-process)
    .venv/bin/python bench/upload_and_deliver.py --destination s3      # to a local S3 server (moto)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/apertur_bench DRAMATIQ_BROKER_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python bench/upload_and_deliver.py --separate-worker  # PostgreSQL + Redis + rundramatiq
"""

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jpeg(seed: int, size=(1600, 1200)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40 + seed % 20).convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.arrivals.setdefault(self.headers["X-Aptr-Image-Id"], time.monotonic())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def watch_bucket(s3_url: str, receiver: Receiver, expected: int) -> None:
    """S3 arrivals: list the bucket until every image's object exists, noting when each first appears."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret-key",
    )
    deadline = time.monotonic() + 600
    while len(receiver.arrivals) < expected and time.monotonic() < deadline:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench"):
            for item in page.get("Contents", []):
                image_id = item["Key"].rsplit("/", 1)[-1].split(".")[0]
                with receiver.lock:
                    receiver.arrivals.setdefault(image_id, time.monotonic())
        time.sleep(0.02)


def wait_until_healthy(base: str, attempts: int = 300) -> None:
    """Poll the server's /healthz until it answers 200 (it is starting up)."""
    for _ in range(attempts):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def start_moto_server(processes: list[subprocess.Popen], logs) -> str:
    """A local S3 server (moto, from the venv: make install-test) with an empty bucket `bench`; its URL."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    processes.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=logs, stderr=logs))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.put(f"{url}/bench", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"moto_server did not start on {url}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def migrate_and_bootstrap(environment: dict[str, str]) -> dict:
    """Migrate the scratch database and make the bench project and API key (`apertur_bootstrap --json`)."""

    def run(*arguments: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *arguments], cwd=REPO, env=environment, check=True, **kwargs
        )

    run("migrate", "--noinput", "-v0")
    bootstrap = ["--email", "bench@example.test", "--password", "bench-password", "--project", "Bench", "--json"]
    return json.loads(run("apertur_bootstrap", *bootstrap, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--separate-worker", action="store_true")
    parser.add_argument(
        "--destination",
        choices=["webhook", "s3"],
        default="webhook",
        help="s3: a moto_server from the venv (make install-test); arrival = the object exists",
    )
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="apertur-bench-"))
    port = free_port()
    environment = {
        **os.environ,
        "APERTUR_VAR_DIR": str(scratch),
        "APERTUR_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "APERTUR_RATE_LIMIT_UPLOAD_PAGE": "100000",
        "APERTUR_RATE_LIMIT_SESSION_CREATE": "100000",
        "APERTUR_LOG_LEVEL": "WARNING",
        "APERTUR_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    credentials = migrate_and_bootstrap(environment)
    logs = (scratch / "server.log").open("wb")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "apertur_run",
                "--port",
                str(port),
                *(["--no-worker"] if options.separate_worker else []),
            ],
            cwd=REPO,
            env=environment,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
    ]
    if options.separate_worker:
        processes.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8"],
                cwd=REPO,
                env=environment,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base)
        receiver = Receiver()
        auth = {"Authorization": f"Bearer {credentials['api_key']}"}
        api = httpx.Client(base_url=f"{base}/api/v1", headers=auth, timeout=60)
        if options.destination == "s3":
            s3_url = start_moto_server(processes, logs)
            config = {
                "endpoint": s3_url,
                "bucket": "bench",
                "accessKey": "bench",
                "secretKey": "bench-secret-key",
                "pathTemplate": "{session_id}/{image_id}.{ext}",  # watch_bucket reads the image id off the key
            }
            threading.Thread(target=watch_bucket, args=(s3_url, receiver, options.images), daemon=True).start()
        else:
            config = {"url": receiver.url, "secret": "bench-secret"}
        destination = api.post(
            f"/projects/{credentials['project_id']}/destinations",
            json={"type": options.destination, "name": "bench", "config": config},
        ).json()
        sessions = [
            api.post("/upload-sessions", json={"destination_ids": [destination["id"]], "max_images": 100}).json()["id"]
            for _ in range(options.images // 100 + 1)
        ]
        payloads = [jpeg(index) for index in range(16)]
        uploaded: dict[str, float] = {}
        latencies: list[float] = []
        lock = threading.Lock()

        def upload(index: int) -> None:
            started = time.monotonic()
            response = httpx.post(
                f"{base}/api/v1/upload/{sessions[index // 100]}/images",
                files={"file": (f"{index}.jpg", payloads[index % len(payloads)], "image/jpeg")},
                timeout=60,
            )
            finished = time.monotonic()
            response.raise_for_status()
            with lock:
                latencies.append(finished - started)
                uploaded[response.json()["id"]] = finished

        wall_start = time.monotonic()
        with ThreadPoolExecutor(options.concurrency) as pool:
            list(pool.map(upload, range(options.images)))
        wall = time.monotonic() - wall_start
        deadline = time.monotonic() + 300
        while len(receiver.arrivals) < options.images and time.monotonic() < deadline:
            time.sleep(0.05)
        delivery = [receiver.arrivals[image] - uploaded[image] for image in uploaded if image in receiver.arrivals]
        result = {
            "benchmark": "upload_and_deliver",
            "database": "postgresql" if "postgres" in os.environ.get("DATABASE_URL", "") else "sqlite",
            "broker": "redis" if os.environ.get("DRAMATIQ_BROKER_URL") else "in-process",
            "destination": options.destination,
            "worker": "separate rundramatiq" if options.separate_worker else "embedded threads",
            "images": options.images,
            "concurrency": options.concurrency,
            "image_bytes_mean": int(statistics.mean(len(payload) for payload in payloads)),
            "uploads_per_second": round(options.images / wall, 1),
            "upload_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
            "upload_ms_p95": round(percentile(latencies, 0.95) * 1000, 1),
            "delivered": len(delivery),
            "upload_to_delivered_ms_p50": round(percentile(delivery, 0.5) * 1000, 1),
            "upload_to_delivered_ms_p95": round(percentile(delivery, 0.95) * 1000, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        }
        for key, value in result.items():
            print(f"{key:28} {value}")
        print(json.dumps(result))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
