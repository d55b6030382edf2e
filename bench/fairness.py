"""Benchmark: does one tenant's slow receiver delay another tenant's deliveries?

Starts a live server (`manage.py apertur_run`, embedded worker) on a scratch database. Tenant A has --slow
destinations, all pointing at a tar-pit receiver that holds every request --hold seconds; it uploads --images
photos into one session with all of them. Then tenant B, with one fast webhook receiver, uploads --probes photos
one after another; the benchmark reports how long each of B's photos took from its upload's 201 to B's receiver.

    .venv/bin/python bench/fairness.py                     # this checkout
    .venv/bin/python bench/fairness.py --repo ../other     # the server code of another checkout (A/B)
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from upload_and_deliver import Receiver, free_port, jpeg, percentile, wait_until_healthy


class TarPit:
    """Holds each POST `hold` seconds before answering 200."""

    def __init__(self, hold: float) -> None:
        released = self.released = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                released.wait(hold)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--slow", type=int, default=4, help="tenant A's destinations, all slow")
    parser.add_argument("--images", type=int, default=8, help="tenant A's photos, each to every slow destination")
    parser.add_argument("--hold", type=float, default=20, help="seconds the tar pit holds each request")
    parser.add_argument("--probes", type=int, default=5, help="tenant B's photos, one after another")
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="apertur-fairness-"))
    port = free_port()
    environment = {
        **os.environ,
        "APERTUR_VAR_DIR": str(scratch),
        "APERTUR_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "APERTUR_LOG_LEVEL": "WARNING",
        "APERTUR_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }

    def manage(*arguments: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *arguments], cwd=options.repo, env=environment, check=True, **kwargs
        )

    manage("migrate", "--noinput", "-v0")
    tenants = [
        json.loads(
            manage(
                "apertur_bootstrap",
                *("--email", f"{name}@example.test", "--password", "bench-password", "--project", name, "--json"),
                capture_output=True,
                text=True,
            ).stdout
        )
        for name in ("slow-tenant", "other-tenant")
    ]
    server = subprocess.Popen(
        [sys.executable, "manage.py", "apertur_run", "--port", str(port)],
        cwd=options.repo,
        env=environment,
        stdout=(scratch / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    tar_pit, receiver = TarPit(options.hold), Receiver()
    try:
        wait_until_healthy(base)

        def session_for(tenant: dict, url: str, count: int) -> str:
            api = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {tenant['api_key']}"})
            destinations = [
                api.post(
                    f"/projects/{tenant['project_id']}/destinations",
                    json={"type": "webhook", "name": f"d{number}", "config": {"url": url, "secret": "bench-secret"}},
                ).json()["id"]
                for number in range(count)
            ]
            return api.post("/upload-sessions", json={"destination_ids": destinations, "max_images": 100}).json()["id"]

        def upload(session_id: str, index: int) -> tuple[str, float]:
            response = httpx.post(
                f"{base}/api/v1/upload/{session_id}/images",
                files={"file": (f"{index}.jpg", jpeg(index, size=(640, 480)), "image/jpeg")},
                timeout=60,
            )
            response.raise_for_status()
            return response.json()["id"], time.monotonic()

        slow_session = session_for(tenants[0], tar_pit.url, options.slow)
        for index in range(options.images):
            upload(slow_session, index)
        time.sleep(1)  # let tenant A's deliveries take every worker thread they can
        fast_session = session_for(tenants[1], receiver.url, 1)
        waits = []
        for index in range(options.probes):
            image_id, uploaded = upload(fast_session, index)
            deadline = time.monotonic() + options.hold * options.slow * options.images
            while image_id not in receiver.arrivals and time.monotonic() < deadline:
                time.sleep(0.005)
            waits.append(receiver.arrivals.get(image_id, deadline) - uploaded)
        result = {
            "benchmark": "fairness",
            "repo": str(options.repo),
            "slow_destinations": options.slow,
            "slow_deliveries": options.slow * options.images,
            "hold_seconds": options.hold,
            "other_tenant_ms_p50": round(percentile(waits, 0.5) * 1000, 1),
            "other_tenant_ms_max": round(max(waits) * 1000, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        }
        for key, value in result.items():
            print(f"{key:22} {value}")
        print(json.dumps(result))
    finally:
        tar_pit.released.set()
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
