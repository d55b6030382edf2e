"""Durability (docs/api.md "Delivery"): killed workers and lost doorbells delay deliveries but never lose or
duplicate them.

These run real processes: the web server (uvicorn), Dramatiq workers (`manage.py rundramatiq`) on a
Redis broker, and the database of the test run. The broker is DRAMATIQ_BROKER_URL when set (as `.ci/run`
sets it), else the Redis server this machine runs on 127.0.0.1:6379 (database 15, or APERTUR_TEST_LOCAL_REDIS so
two checkouts can run their suites at once).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest
import redis

from delivery.models import Delivery, DeliveryAttempt
from destinations.services import destination_create
from tests.conftest import REPO_ROOT, ServerProcess, process_environment
from tests.factories import image_bytes, make_persona, wait_until

LOCAL_REDIS_BROKER = os.environ.get("APERTUR_TEST_LOCAL_REDIS", "redis://127.0.0.1:6379/15")


def shared_broker_url() -> str | None:
    """The Redis broker the processes share: the configured one, else the local Redis if it answers."""
    if os.environ.get("DRAMATIQ_BROKER_URL"):
        return os.environ["DRAMATIQ_BROKER_URL"]
    try:
        redis.Redis.from_url(LOCAL_REDIS_BROKER, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return LOCAL_REDIS_BROKER


BROKER_URL = shared_broker_url()
pytestmark = pytest.mark.skipif(
    BROKER_URL is None, reason="needs DRAMATIQ_BROKER_URL or a Redis server on 127.0.0.1:6379"
)

PROCESS_SETTINGS = {
    "DRAMATIQ_BROKER_URL": BROKER_URL or "",
    "APERTUR_DELIVERY_LEASE_SECONDS": "3",
    "APERTUR_SWEEP_INTERVAL_SECONDS": "0.3",
    "APERTUR_SWEEP_RESEND_AFTER_SECONDS": "1",
    "APERTUR_RETRY_DELAYS": "0.2,0.2,0.2,0.2,0.2",
}


def empty_the_broker() -> None:
    redis.Redis.from_url(BROKER_URL).flushdb()


class WorkerProcess:
    """`manage.py rundramatiq` in its own process group, so SIGKILL reaches the forked workers too."""

    def __init__(self, log_path, **settings: str) -> None:
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=process_environment(**{**PROCESS_SETTINGS, **settings}),
        )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class AcceptanceLedger:
    """What the receiver accepted (answered 2xx), by (delivery id, attempt number)."""

    def __init__(self) -> None:
        self.accepted: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()

    def accept(self, request) -> int:
        with self.lock:
            self.accepted[(request.header("X-Aptr-Delivery-Id"), int(request.header("X-Aptr-Attempt")))] += 1
        return 200

    def assert_each_delivered_exactly_once(self) -> None:
        """Each delivery's recorded successful attempt was accepted exactly once. The only other acceptances
        allowed are of attempts recorded as lost: a request the killed worker had already sent, which the
        receiver read after the worker died (the at-least-once window receivers close by deduplicating on
        X-Aptr-Delivery-Id)."""
        attempts = DeliveryAttempt.objects.all()
        delivered = {
            (str(attempt.delivery_id), attempt.number) for attempt in attempts if attempt.outcome == "delivered"
        }
        lost = {(str(attempt.delivery_id), attempt.number) for attempt in attempts if attempt.outcome == "lost"}
        assert {str(delivery.pk) for delivery in Delivery.objects.filter(status="delivered")} == {
            delivery_id for delivery_id, _ in delivered
        }
        assert all(self.accepted[key] == 1 for key in delivered), (self.accepted, delivered)
        assert set(self.accepted) - delivered <= lost, (self.accepted, delivered, lost)


@pytest.fixture
def web_only(transactional_db, tmp_path):
    empty_the_broker()
    server = ServerProcess(with_worker=False, log_path=tmp_path / "web.log", **PROCESS_SETTINGS)
    yield server
    server.stop()


def _session_with_webhook(persona, server, receiver) -> str:
    destination = destination_create(
        project=persona.project,
        type="webhook",
        name="receiver",
        config={"url": f"{receiver.url}/hook", "secret": "durable-secret"},
    )
    response = httpx.post(
        f"{server.url}/api/v1/upload-sessions",
        json={"destination_ids": [str(destination.pk)]},
        headers={"Authorization": f"Bearer {persona.plain_key}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _upload(server, session_id: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        response = httpx.post(
            f"{server.url}/api/v1/upload/{session_id}/images",
            files={"file": (f"p{index}.jpg", image_bytes(color=(index, 10, 10)), "image/jpeg")},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def test_worker_killed_mid_delivery_still_delivers_every_image_exactly_once(web_only, webhook_receiver, tmp_path):
    persona = make_persona("owner")
    ledger = AcceptanceLedger()
    first_request_arrived, release = threading.Event(), threading.Event()
    hung = Counter()

    def hang_until_the_worker_is_dead_then_accept(request) -> int:
        # Nothing is accepted before the kill: every attempt in flight then is interrupted mid-request.
        if not release.is_set():
            hung[request.header("X-Aptr-Delivery-Id")] += 1
            first_request_arrived.set()
            release.wait(timeout=30)
            return 503  # the worker that sent it is dead; this answer reaches nobody
        return ledger.accept(request)

    webhook_receiver.respond = hang_until_the_worker_is_dead_then_accept
    session_id = _session_with_webhook(persona, web_only, webhook_receiver)
    first_worker = WorkerProcess(tmp_path / "worker.log")
    try:
        _upload(web_only, session_id, 3)
        assert first_request_arrived.wait(timeout=30), "no delivery reached the receiver"
        first_worker.kill()
    finally:
        release.set()
        first_worker.stop()

    second_worker = WorkerProcess(tmp_path / "worker.log")
    try:
        wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 3, timeout=60)
    finally:
        second_worker.stop()

    ledger.assert_each_delivered_exactly_once()
    deliveries = list(Delivery.objects.all())
    # An attempt killed before its request left the worker is lost too, so lost ⊇ hung.
    lost = Counter(str(attempt.delivery_id) for attempt in DeliveryAttempt.objects.filter(outcome="lost"))
    assert set(hung) <= set(lost)
    assert all(delivery.attempts == lost[str(delivery.pk)] + 1 for delivery in deliveries)


def test_deliveries_committed_before_the_web_process_died_are_delivered_by_the_sweeper(
    web_only, webhook_receiver, tmp_path
):
    persona = make_persona("owner")
    ledger = AcceptanceLedger()
    webhook_receiver.respond = ledger.accept
    session_id = _session_with_webhook(persona, web_only, webhook_receiver)

    _upload(web_only, session_id, 2)
    web_only.kill()
    # The doorbells rung after commit are lost too (as if the process died before sending them):
    empty_the_broker()
    assert Delivery.objects.filter(status="pending").count() == 2

    worker = WorkerProcess(tmp_path / "worker.log")
    try:
        wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 2, timeout=60)
    finally:
        worker.stop()
    ledger.assert_each_delivered_exactly_once()
    assert sorted(ledger.accepted.values()) == [1, 1]


def test_with_the_default_lease_an_attempt_cut_by_kill_9_is_redelivered_within_a_minute(
    web_only, webhook_receiver, tmp_path
):
    persona = make_persona("owner")
    ledger = AcceptanceLedger()
    first_request_arrived, release = threading.Event(), threading.Event()

    def hang_first_then_accept(request) -> int:
        if not first_request_arrived.is_set():
            first_request_arrived.set()
            release.wait(timeout=90)
            return 503  # its worker is dead by now
        return ledger.accept(request)

    webhook_receiver.respond = hang_first_then_accept
    session_id = _session_with_webhook(persona, web_only, webhook_receiver)
    default_lease = {"APERTUR_DELIVERY_LEASE_SECONDS": "30"}
    first_worker = WorkerProcess(tmp_path / "worker.log", **default_lease)
    try:
        [image_id] = _upload(web_only, session_id, 1)
        assert first_request_arrived.wait(timeout=30), "the delivery never reached the receiver"
        first_worker.kill()
    finally:
        first_worker.stop()

    second_worker = WorkerProcess(tmp_path / "worker.log", **default_lease)
    restarted = time.monotonic()
    try:
        wait_until(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=75, interval=0.2)
        redelivered_after = time.monotonic() - restarted
    finally:
        release.set()
        second_worker.stop()

    assert redelivered_after < 60
    delivery = Delivery.objects.get()
    assert delivery.image_id == image_id
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["lost", "delivered"]
    ledger.assert_each_delivered_exactly_once()
    # One delivery id throughout: the receiver can tell the retry from a new image.
    assert {request.header("X-Aptr-Delivery-Id") for request in webhook_receiver.requests} == {str(delivery.pk)}


def test_a_slow_attempt_of_a_live_worker_keeps_its_lease_and_is_never_taken_over(web_only, webhook_receiver, tmp_path):
    persona = make_persona("owner")
    answered = threading.Event()

    def answer_after_several_leases(request) -> int:
        answered.wait(timeout=5)  # the receiver is slow: 5 s, while a lease lasts 1 s
        return 200

    webhook_receiver.respond = answer_after_several_leases
    session_id = _session_with_webhook(persona, web_only, webhook_receiver)
    worker = WorkerProcess(tmp_path / "worker.log", APERTUR_DELIVERY_LEASE_SECONDS="1")
    try:
        _upload(web_only, session_id, 1)
        wait_until(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=30)
    finally:
        worker.stop()

    delivery = Delivery.objects.get()
    assert delivery.attempts == 1
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["delivered"]
    assert len(webhook_receiver.requests) == 1
