"""Shared fixtures: personas, the API client, a webhook receiver, an in-process worker, a live server."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq
import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from apertur import http as outbound
from projects.models import Membership
from tests import official_client
from tests.factories import make_persona
from tests.servers.webhook_receiver import WebhookReceiver

REPO_ROOT = Path(__file__).resolve().parent.parent
official_client.load()  # before any test module imports `apertur_sdk`


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Loopback destinations are allowed (docs/api.md "Host safety": the suite sets 127.0.0.0/8); caches start empty."""
    settings.APERTUR_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    # The production hasher is slow on purpose; tests create many users and session passwords.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Same reason: every test that creates a session makes the upload-encryption key pair (a 3072-bit one takes
    # ~0.1 s, 2048 bits ~40 ms, 1024 bits ~6 ms). 1024 bits still wrap an AES-256 key with OAEP-SHA-256.
    settings.APERTUR_ENCRYPTION_KEY_BITS = 1024
    settings.MEDIA_ROOT = str(tmp_path / "media")
    # The Django test client's requests run inside the test's transaction, on the test's thread.
    settings.APERTUR_WAIT_ON_CALLING_THREAD = True
    outbound._allowed_private_networks.cache_clear()
    cache.clear()
    yield
    outbound._allowed_private_networks.cache_clear()


@pytest.fixture
def owner(db):
    return make_persona("owner")


@pytest.fixture
def outsider(db):
    return make_persona("outsider")


@pytest.fixture
def roles(owner):
    """The users of the dashboard's permission matrices: the owner, an admin and a member of the owner's project,
    and an outsider (another project's owner)."""
    people = {"owner": owner.user}
    for role in ("admin", "member"):
        persona = make_persona(f"role-{role}")
        Membership.objects.create(user=persona.user, project=owner.project, role=role)
        people[role] = persona.user
    people["outsider"] = make_persona("role-outsider").user
    return people


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@contextmanager
def in_process_worker(settings, *, threads: int) -> Iterator[dramatiq.Worker]:
    """Dramatiq worker threads and a fast sweeper in this process, on the configured broker."""
    import delivery.actors  # noqa: F401

    settings.APERTUR_SWEEP_INTERVAL_SECONDS = 0.2
    settings.APERTUR_SWEEP_RESEND_AFTER_SECONDS = 1
    broker = dramatiq.get_broker()
    broker.flush_all()
    running = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    running.apertur_embedded = True  # in the tests' own process, sharing its settings (apertur/broker.py)
    running.start()
    try:
        yield running
    finally:
        running.stop(timeout=10_000)
        broker.flush_all()


@pytest.fixture
def worker(transactional_db, settings):
    """Two worker threads in this process. Tests that use it see committed data only (transactional_db), like a
    real worker."""
    with in_process_worker(settings, threads=2) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database as a URL, for server and worker processes started by tests."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return (
        f"postgres://{database['USER']}{password}@{database.get('HOST') or '127.0.0.1'}:"
        f"{database.get('PORT') or 5432}/{database['NAME']}"
    )


def process_environment(**overrides: str) -> dict[str, str]:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "APERTUR_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "APERTUR_SECRET_KEYS": ",".join(settings.APERTUR_SECRET_KEYS),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    environment.update(overrides)
    return environment


class ServerProcess:
    """`manage.py apertur_run` in a child process, answering on a free port; with `web_workers`, `manage.py
    apertur_web --workers N` (web processes only)."""

    def __init__(
        self, *, with_worker: bool, log_path: Path, web_workers: int | None = None, **environment: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        arguments = [sys.executable, "manage.py", "apertur_run", "--port", str(self.port)]
        if web_workers is not None:
            arguments = [*arguments[:2], "apertur_web", "--port", str(self.port), "--workers", str(web_workers)]
        elif not with_worker:
            arguments.append("--no-worker")
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            arguments,
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=process_environment(APERTUR_PUBLIC_URL=self.url, **environment),
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        import httpx

        from tests.factories import wait_until

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early; see {self.log.name}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=timeout, interval=0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def live_server_process(transactional_db, tmp_path):
    """The real site, web server and embedded worker, on the test database."""
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log", APERTUR_SWEEP_INTERVAL_SECONDS="0.5")
    yield server
    server.stop()
