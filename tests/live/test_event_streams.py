"""Server-Sent Events (docs/api.md "Server-Sent Events") against a live server: the events of real uploads and
deliveries in order with ids, replay after Last-Event-ID, heartbeats, the end of a session, authorisation."""

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.factories import image_bytes, make_persona
from tests.live.sse import SseReader


@pytest.fixture
def server(transactional_db, tmp_path):
    process = ServerProcess(
        with_worker=True,
        log_path=tmp_path / "server.log",
        APERTUR_SWEEP_INTERVAL_SECONDS="0.5",
        APERTUR_SSE_HEARTBEAT_SECONDS="0.3",
    )
    yield process
    process.stop()


class Api:
    def __init__(self, server: ServerProcess, persona) -> None:
        self.server = server
        self.persona = persona
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {persona.plain_key}"})

    def webhook(self, url: str) -> str:
        response = self.http.post(
            f"/api/v1/projects/{self.persona.project.pk}/destinations",
            json={"type": "webhook", "name": "r", "config": {"url": url, "secret": "stream-secret"}},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def session(self, **body) -> str:
        response = self.http.post("/api/v1/upload-sessions", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def upload(self, session_id: str, name: str = "a.jpg", **headers) -> dict:
        response = httpx.post(
            f"{self.server.url}/api/v1/upload/{session_id}/images",
            files={"file": (name, image_bytes(), "image/jpeg")},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def complete(self, session_id: str, **headers) -> None:
        response = httpx.post(f"{self.server.url}/api/v1/upload/{session_id}/complete", headers=headers)
        assert response.status_code == 200, response.text


@pytest.fixture
def api(server):
    return Api(server, make_persona("streamer"))


def test_a_keys_stream_tells_each_image_and_delivery_in_order_then_ends_with_the_session(api, webhook_receiver):
    destination_id = api.webhook(f"{webhook_receiver.url}/in")
    session_id = api.session(destination_ids=[destination_id])
    stream = SseReader(
        f"{api.server.url}/api/v1/sessions/{session_id}/events", {"Authorization": f"Bearer {api.persona.plain_key}"}
    )
    try:
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        connected = stream.next()
        assert (connected.event, connected.data) == ("connected", {"sessionId": session_id})

        image = api.upload(session_id)
        frames = stream.events_until("image:delivered")
        assert [frame.event for frame in frames] == ["image:ready", "image:delivering", "image:delivered"]
        ready, delivering, delivered = frames
        assert ready.data == {
            "imageId": image["id"],
            "imageIndex": 0,
            "filename": "a.jpg",
            "sizeBytes": image["size_bytes"],
            "mimeType": "image/jpeg",
        }
        assert delivering.data == {"imageId": image["id"], "destinationId": destination_id, "attempt": 1}
        assert delivered.data == {"imageId": image["id"], "destinationId": destination_id, "destinationType": "webhook"}
        ids = [frame.id for frame in frames]
        assert all(ids) and ids == sorted(ids, key=lambda value: tuple(map(int, value.split("-"))))

        api.complete(session_id)
        completed = stream.next()
        assert (completed.event, completed.data) == (
            "session:completed",
            {"sessionId": session_id, "status": "completed"},
        )
        assert stream.ended.wait(5), "the stream stays open after the session ended"
    finally:
        stream.close()


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(api):
    session_id = api.session(long_polling=True)
    url = f"{api.server.url}/api/v1/upload/{session_id}/events"
    first = SseReader(url)
    try:
        assert first.next().event == "connected"
        api.upload(session_id, "one.jpg")
        seen = first.next()
        assert seen.event == "image:ready" and seen.data["filename"] == "one.jpg"
    finally:
        first.close()

    api.upload(session_id, "two.jpg")
    api.upload(session_id, "three.jpg")
    again = SseReader(url, {"Last-Event-ID": seen.id})
    try:
        assert again.next().event == "connected"
        missed = [again.next(), again.next()]
        assert [frame.data["filename"] for frame in missed] == ["two.jpg", "three.jpg"]
        assert all(frame.id > seen.id for frame in missed)
        assert again.next(timeout=1, skip_comments=False).comment == "heartbeat"  # nothing else was replayed
    finally:
        again.close()


def test_an_idle_stream_gets_a_heartbeat_comment(api):
    session_id = api.session(long_polling=True)
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
    try:
        assert stream.next().event == "connected"
        assert stream.next(timeout=3, skip_comments=False).comment == "heartbeat"
    finally:
        stream.close()


def test_the_key_may_be_passed_as_token_and_never_reaches_the_log(api):
    session_id = api.session(long_polling=True)
    stream = SseReader(f"{api.server.url}/api/v1/sessions/{session_id}/events?token={api.persona.plain_key}")
    try:
        assert stream.status == 200 and stream.next().event == "connected"
    finally:
        stream.close()
    wrong = httpx.get(f"{api.server.url}/api/v1/sessions/{session_id}/events?token=aptr_live_nope")
    assert wrong.status_code == 401 and wrong.json()["code"] == "AUTHENTICATION_FAILED"
    time.sleep(0.2)  # the access log line is written after the response
    text = Path(api.server.log.name).read_text(encoding="utf-8", errors="replace")
    assert f"/api/v1/sessions/{session_id}/events?token=[redacted]" in text
    assert api.persona.plain_key not in text and "aptr_live_nope" not in text


def test_streams_refuse_strangers_unknown_sessions_and_missing_passwords(api):
    session_id = api.session(long_polling=True, password="open-sesame")
    stranger = make_persona("stranger")
    foreign = httpx.get(
        f"{api.server.url}/api/v1/sessions/{session_id}/events",
        headers={"Authorization": f"Bearer {stranger.plain_key}"},
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == "NOT_FOUND"
    unknown = httpx.get(f"{api.server.url}/api/v1/upload/sess_01ARZ3NDEKTSV4RRFFQ69G5FAV/events")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
    no_password = httpx.get(f"{api.server.url}/api/v1/upload/{session_id}/events")
    assert no_password.status_code == 401 and no_password.json()["code"] == "PASSWORD_REQUIRED"
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events", {"x-session-password": "open-sesame"})
    try:
        assert stream.status == 200 and stream.next().event == "connected"
    finally:
        stream.close()


def test_an_ended_session_says_so_at_once_and_a_reconnect_that_missed_nothing_is_told_to_stop(api):
    session_id = api.session(long_polling=True)
    api.upload(session_id)
    api.complete(session_id)
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
    try:
        assert stream.next().event == "connected"
        completed = stream.next()
        assert (completed.event, completed.data["status"]) == ("session:completed", "completed")
        assert stream.ended.wait(5)
    finally:
        stream.close()
    latest = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events", {"Last-Event-ID": "0-0"})
    try:
        replayed = latest.events_until("session:completed")
        last_id = [frame.id for frame in replayed if frame.id][-1]
    finally:
        latest.close()
    stop = httpx.get(f"{api.server.url}/api/v1/upload/{session_id}/events", headers={"Last-Event-ID": last_id})
    assert stop.status_code == 204


def test_stopping_the_server_ends_streams_and_answers_waiting_polls_at_once(api):
    session_id = api.session(long_polling=True)
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
    assert stream.next().event == "connected"
    status = api.http.get(f"/api/v1/upload-sessions/{session_id}/delivery-status").json()
    answers = []

    def poll_from() -> None:
        answers.append(
            api.http.get(
                f"/api/v1/upload-sessions/{session_id}/delivery-status", params={"pollFrom": status["lastChanged"]}
            )
        )

    waiter = threading.Thread(target=poll_from)
    waiter.start()
    time.sleep(0.3)  # the poll is parked inside the server
    stopping = time.monotonic()
    api.server.process.send_signal(signal.SIGTERM)
    assert stream.ended.wait(5), "the stream held the shutdown"
    waiter.join(timeout=5)
    assert answers and answers[0].status_code == 200 and answers[0].json()["lastChanged"] == status["lastChanged"]
    api.server.process.wait(timeout=10)
    assert time.monotonic() - stopping < 5
    stream.close()
