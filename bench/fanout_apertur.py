"""A live Apertur server for bench/fanout.py, driven through its API as a client would."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx
from upload_and_deliver import wait_until_healthy

REPO = Path(__file__).resolve().parent.parent


# A process or thread that ends while /proc is read: its files vanish (FileNotFoundError), or an opened one
# can no longer be read (ProcessLookupError).
GONE = (FileNotFoundError, ProcessLookupError)


def child_pids(pid: int) -> list[int]:
    """The child processes of every thread of `pid`; a thread that ends meanwhile is passed over, not the process."""
    children = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except GONE:
        return []
    for task in tasks:
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except GONE:
            continue
    return children


class Apertur:
    """`manage.py apertur_run` on a scratch directory, with a bootstrapped project and API key.

    The deliveries run in worker threads of the web process (the embedded default), or in `manage.py rundramatiq`
    (needs DRAMATIQ_BROKER_URL): `separate_worker_threads` threads in all, shared out among
    `separate_worker_processes` processes. `profile` (mode, report): the web process runs under
    bench/profile_server.py."""

    def __init__(
        self,
        scratch: Path,
        environment: dict[str, str],
        log: IO[bytes],
        *,
        separate_worker_threads: int = 0,
        separate_worker_processes: int = 1,
        profile: tuple[str, Path] | None = None,
    ) -> None:
        self.scratch = scratch
        self.port = int(environment["APERTUR_PUBLIC_URL"].rsplit(":", 1)[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = environment.get("DATABASE_URL", "")

        def manage(*arguments: str) -> str:
            return subprocess.run(
                [sys.executable, "manage.py", *arguments],
                cwd=REPO,
                env=environment,
                check=True,
                capture_output=True,
                text=True,
            ).stdout

        manage("migrate", "--noinput", "-v0")
        credentials = json.loads(
            manage(
                "apertur_bootstrap",
                *("--email", "bench@example.test", "--password", "bench-password", "--project", "Bench", "--json"),
            )
        )
        self.key, self.project_id = credentials["api_key"], credentials["project_id"]
        profiler = [str(REPO / "bench" / "profile_server.py"), profile[0], str(profile[1]), "--"] if profile else []
        no_worker = ["--no-worker"] if separate_worker_threads else []
        launch = {"cwd": REPO, "env": environment, "stdout": log, "stderr": subprocess.STDOUT}
        self.web = subprocess.Popen(
            [sys.executable, *profiler, "manage.py", "apertur_run", "--port", str(self.port), *no_worker], **launch
        )
        self.worker = None
        self.held: list[int] = []  # worker processes frozen by `hold_deliveries`
        self.worker_processes = separate_worker_processes if separate_worker_threads else 0
        if separate_worker_threads:
            processes, threads = separate_worker_processes, separate_worker_threads // separate_worker_processes
            self.worker = subprocess.Popen(
                [sys.executable, "manage.py", "rundramatiq", "--processes", str(processes), "--threads", str(threads)],
                **launch,
            )
        try:
            wait_until_healthy(self.base)
        except BaseException:
            for process in (self.web, self.worker):
                if process is not None:
                    process.terminate()
            raise
        self.api = httpx.Client(
            base_url=f"{self.base}/api/v1", headers={"Authorization": f"Bearer {self.key}"}, timeout=120
        )

    @property
    def delivering_pids(self) -> list[int]:
        """The processes whose threads run the deliveries: the web process, or rundramatiq's worker processes."""
        if self.worker is None:
            return [self.web.pid]
        children = child_pids(self.worker.pid)
        if len(children) != self.worker_processes:
            raise SystemExit(f"expected {self.worker_processes} dramatiq worker processes, found {children}")
        return children

    def hold_deliveries(self) -> None:
        """Freeze the separate worker (SIGSTOP): deliveries queue up in the broker until `release_deliveries`."""
        for pid in self.delivering_pids:
            os.kill(pid, signal.SIGSTOP)
            self.held.append(pid)

    def release_deliveries(self) -> None:
        """Thaw exactly the processes frozen, wherever they are now: a frozen one would never stop."""
        while self.held:
            try:
                os.kill(self.held.pop(), signal.SIGCONT)
            except ProcessLookupError:
                continue

    def signal_web(self, number: int) -> None:
        self.web.send_signal(number)

    def create_destination(self, kind: str, config: dict[str, Any]) -> str:
        answer = self.api.post(
            f"/projects/{self.project_id}/destinations", json={"type": kind, "name": f"bench {kind}", "config": config}
        )
        answer.raise_for_status()
        return answer.json()["id"]

    def create_sessions(self, destination_ids: list[str], images: int) -> list[str]:
        """Sessions of at most 100 images (APERTUR_MAX_IMAGES_CAP) for `images` images."""
        sessions = []
        for start in range(0, images, 100):
            answer = self.api.post(
                "/upload-sessions", json={"destination_ids": destination_ids, "max_images": min(100, images - start)}
            )
            answer.raise_for_status()
            sessions.append(answer.json()["id"])
        return sessions

    def upload(self, files: list[Path], sessions: list[str], concurrency: int) -> dict[str, tuple[Path, float]]:
        """Upload every file (file i into session i // 100); image id → (file, wall-clock time of its 201)."""
        accepted: dict[str, tuple[Path, float]] = {}
        local = threading.local()

        def one(index: int) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=120)
            path = files[index]
            answer = local.client.post(
                f"{self.base}/api/v1/upload/{sessions[index // 100]}/images",
                files={"file": (path.name, path.read_bytes(), "image/jpeg")},
            )
            answer.raise_for_status()
            accepted[answer.json()["id"]] = (path, time.time())

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(len(files))))
        return accepted

    def delivery_status(self, sessions: list[str]) -> list[dict[str, Any]]:
        """Every image of the sessions, with its deliveries (docs/api.md "Delivery status")."""
        images = []
        for session in sessions:
            answer = self.api.get(f"/upload-sessions/{session}/delivery-status")
            answer.raise_for_status()
            images += answer.json()["images"]
        return images

    def wait_delivered(self, sessions: list[str], expected: int, timeout: float = 900) -> list[dict[str, Any]]:
        """Poll the delivery status every 0.5 s until `expected` deliveries are `delivered`; the images then."""
        deadline = time.monotonic() + timeout
        while True:
            images = self.delivery_status(sessions)
            deliveries = [delivery for image in images for delivery in image["deliveries"]]
            failed = [delivery for delivery in deliveries if delivery["status"] == "failed"]
            if failed:
                raise SystemExit(f"{len(failed)} deliveries failed, e.g. {failed[0]}")
            if sum(delivery["status"] == "delivered" for delivery in deliveries) >= expected:
                return images
            if time.monotonic() > deadline:
                raise SystemExit(f"not all delivered within {timeout} s; see {self.scratch / 'server.log'}")
            time.sleep(0.5)

    def attempts(self, sessions: list[str]) -> list[tuple[str, float, float]]:
        """(destination id without dashes, seconds, start as a Unix time) of every attempt for the sessions' images,
        read from the database (the API does not show attempts)."""
        query = (
            "SELECT delivery.destination_id, attempt.duration_ms, attempt.started_at"
            " FROM delivery_deliveryattempt attempt"
            " JOIN delivery_delivery delivery ON attempt.delivery_id = delivery.id"
            " JOIN sessions_app_image image ON delivery.image_id = image.id"
            " WHERE image.session_id IN ({})"
        )
        if self.database_url.startswith("postgres"):
            import psycopg

            with psycopg.connect(self.database_url) as connection:
                rows = connection.execute(query.format(",".join(["%s"] * len(sessions))), sessions).fetchall()
        else:
            database = sqlite3.connect(f"file:{self.scratch / 'var' / 'apertur.sqlite3'}?mode=ro", uri=True)
            rows = database.execute(query.format(",".join("?" * len(sessions))), sessions).fetchall()
            database.close()
        return [
            (
                str(destination).replace("-", ""),
                milliseconds / 1000,
                # SQLite keeps UTC as text; psycopg answers an aware datetime
                (started if isinstance(started, datetime) else datetime.fromisoformat(f"{started}+00:00")).timestamp(),
            )
            for destination, milliseconds, started in rows
        ]

    def stop(self) -> None:
        self.api.close()
        self.release_deliveries()
        processes = [process for process in (self.web, self.worker) if process is not None]
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
