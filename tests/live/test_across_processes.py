"""Live events across processes (docs/deployment.md "Long polls and event streams"): two web processes and one
`rundramatiq` worker on the test database with Redis as broker and event bus. Waiters on web process 1 (an event
stream, a pollFrom, a held poll) are woken by an upload through web process 2, and the stream and a new poll by the
delivery the worker makes; a reconnect to the other process with
Last-Event-ID gets exactly what it missed."""

import os
import threading
import time

import httpx
import pytest
import redis

from tests.conftest import ServerProcess
from tests.delivery.test_durability import BROKER_URL, LOCAL_REDIS_BROKER, WorkerProcess, empty_the_broker
from tests.factories import image_bytes, make_persona
from tests.live.sse import SseReader

EVENT_BUS_URL = os.environ.get("REDIS_URL") or LOCAL_REDIS_BROKER.rsplit("/", 1)[0] + "/14"
pytestmark = pytest.mark.skipif(BROKER_URL is None, reason="needs DRAMATIQ_BROKER_URL or a Redis server")

SETTINGS = {
    "DRAMATIQ_BROKER_URL": BROKER_URL or "",
    "REDIS_URL": EVENT_BUS_URL,
    "APERTUR_SWEEP_INTERVAL_SECONDS": "0.3",
}


@pytest.fixture
def cluster(transactional_db, tmp_path, webhook_receiver):
    empty_the_broker()
    redis.Redis.from_url(EVENT_BUS_URL).flushdb()
    first = ServerProcess(with_worker=False, log_path=tmp_path / "web1.log", **SETTINGS)
    second = ServerProcess(with_worker=False, log_path=tmp_path / "web2.log", **SETTINGS)
    worker = WorkerProcess(tmp_path / "worker.log", **SETTINGS)
    yield first, second
    worker.stop()
    first.stop()
    second.stop()


def test_waiters_on_one_web_process_hear_uploads_through_another_and_deliveries_by_the_worker(
    cluster, webhook_receiver
):
    first, second = cluster
    persona = make_persona("cluster")
    auth = {"Authorization": f"Bearer {persona.plain_key}"}
    destination = httpx.post(
        f"{second.url}/api/v1/projects/{persona.project.pk}/destinations",
        json={"type": "webhook", "name": "r", "config": {"url": f"{webhook_receiver.url}/in", "secret": "c-secret"}},
        headers=auth,
    ).json()
    session_id = httpx.post(
        f"{second.url}/api/v1/upload-sessions",
        json={"destination_ids": [destination["id"]], "long_polling": True},
        headers=auth,
    ).json()["id"]
    status_url = f"/api/v1/upload-sessions/{session_id}/delivery-status"
    baseline = httpx.get(first.url + status_url, headers=auth).json()

    stream = SseReader(f"{first.url}/api/v1/sessions/{session_id}/events", auth)
    answers: list[tuple[float, dict]] = []
    held: list[tuple[float, httpx.Response]] = []

    def poll_from(since: str) -> None:
        response = httpx.get(first.url + status_url, params={"pollFrom": since}, headers=auth, timeout=30)
        answers.append((time.monotonic(), response.json()))

    def held_poll() -> None:
        response = httpx.get(
            f"{first.url}/api/v1/sessions/{session_id}/poll", params={"timeout": 20}, headers=auth, timeout=30
        )
        held.append((time.monotonic(), response))

    try:
        assert stream.next().event == "connected"
        waiter = threading.Thread(target=poll_from, args=(baseline["lastChanged"],))
        waiter.start()
        puller = threading.Thread(target=held_poll)
        puller.start()
        time.sleep(0.3)  # both parked inside web process 1
        uploaded_at = time.monotonic()
        upload = httpx.post(
            f"{second.url}/api/v1/upload/{session_id}/images", files={"file": ("a.jpg", image_bytes(), "image/jpeg")}
        )
        assert upload.status_code == 201
        ready = stream.next()
        assert (ready.event, ready.data["imageId"]) == ("image:ready", upload.json()["id"])
        waiter.join(timeout=10)
        [(answered_at, changed)] = answers
        # Woken by the event, not a timer (the poll would wait 300 s); the bound allows for a loaded 2-core CI box.
        assert answered_at - uploaded_at < 3 and changed["images"][0]["filename"] == "a.jpg"
        puller.join(timeout=10)
        [(pulled_at, pulled)] = held
        assert pulled.status_code == 200 and pulled.json()["image_id"] == upload.json()["id"]
        assert pulled_at - uploaded_at < 3  # its timeout is 20 s

        # The worker (a third process) delivers: web process 1's stream and a new poll hear it.
        delivered = stream.events_until("image:delivered")
        assert [frame.event for frame in delivered] == ["image:delivering", "image:delivered"]
        status = httpx.get(first.url + status_url, headers=auth).json()
        assert status["images"][0]["deliveries"][0]["status"] == "delivered"
        last_seen = delivered[-1].id
    finally:
        stream.close()

    # Missed while away: the session completes (through web process 1); the reconnect goes to web process 2.
    completed = httpx.post(f"{first.url}/api/v1/upload/{session_id}/complete")
    assert completed.status_code == 200
    again = SseReader(f"{second.url}/api/v1/sessions/{session_id}/events", {**auth, "Last-Event-ID": last_seen})
    try:
        assert again.next().event == "connected"
        missed = again.next()
        assert (missed.event, missed.data) == ("session:completed", {"sessionId": session_id, "status": "completed"})
        assert again.ended.wait(5)
    finally:
        again.close()
