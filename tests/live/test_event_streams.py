"""Server-Sent Events (docs/api.md "Server-Sent Events") against a live server: the events of real uploads and
deliveries in order with ids, replay after Last-Event-ID, heartbeats, the end of a session, authorisation."""

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.destinations.helpers import FixedAnswerServer
from tests.factories import image_bytes, make_persona
from tests.live.sse import SseReader


@pytest.fixture
def server(transactional_db, tmp_path):
    process = ServerProcess(
        with_worker=True,
        log_path=tmp_path / "server.log",
        APERTUR_SWEEP_INTERVAL_SECONDS="0.5",
        APERTUR_SSE_HEARTBEAT_SECONDS="0.3",
        APERTUR_SSE_RECHECK_SECONDS="0.5",
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


def test_an_ended_session_says_so_at_once_with_an_id_a_reconnect_with_it_is_told_to_stop(api):
    session_id = api.session(long_polling=True)
    api.upload(session_id)
    api.complete(session_id)
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
    try:
        assert stream.next().event == "connected"
        completed = stream.next()
        assert (completed.event, completed.data["status"]) == ("session:completed", "completed")
        assert completed.id, "without an id a browser reconnects every 3 s forever"
        assert stream.ended.wait(5)
    finally:
        stream.close()
    stop = httpx.get(f"{api.server.url}/api/v1/upload/{session_id}/events", headers={"Last-Event-ID": completed.id})
    assert stop.status_code == 204

    replay = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events", {"Last-Event-ID": "0-0"})
    try:
        frames = replay.events_until("session:completed")
        assert [frame.event for frame in frames] == ["connected", "image:ready", "session:completed"]
        assert replay.ended.wait(5)
        assert replay.frames.get(timeout=5) is None, "the end was told twice"
    finally:
        replay.close()


def test_a_reconnect_that_missed_the_end_is_told_it_not_to_stop(api):
    session_id = api.session(long_polling=True)
    url = f"{api.server.url}/api/v1/upload/{session_id}/events"
    first = SseReader(url)
    try:
        assert first.next().event == "connected"
        api.upload(session_id)
        seen = first.next()
    finally:
        first.close()
    api.complete(session_id)  # while away
    again = SseReader(url, {"Last-Event-ID": seen.id})
    try:
        assert again.status == 200
        assert [frame.event for frame in again.events_until("session:completed")] == ["connected", "session:completed"]
    finally:
        again.close()


def test_the_upload_that_fills_a_pull_only_session_ends_its_stream(api):
    session_id = api.session(long_polling=True, max_images=1)
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
    try:
        assert stream.next().event == "connected"
        api.upload(session_id)
        assert [frame.event for frame in stream.events_until("session:completed")] == [
            "image:ready",
            "session:completed",
        ]
        assert stream.ended.wait(5)
    finally:
        stream.close()


def test_head_answers_the_headers_without_holding_the_connection(api):
    session_id = api.session(long_polling=True)
    with httpx.Client(base_url=api.server.url, timeout=5) as client:
        head = client.head(f"/api/v1/upload/{session_id}/events")
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream")
        assert client.get(f"/api/v1/upload/{session_id}/session").status_code == 200  # same connection, answered


def test_a_new_password_ends_the_anonymous_streams_opened_without_it(api):
    session_id = api.session(long_polling=True)
    stream = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
    try:
        assert stream.next().event == "connected"
        patched = api.http.patch(f"/api/v1/upload-sessions/{session_id}", json={"password": "now-secret"})
        assert patched.status_code == 200, patched.text
        assert stream.ended.wait(5), "a stream opened without the password kept listening"
    finally:
        stream.close()
    again = httpx.get(f"{api.server.url}/api/v1/upload/{session_id}/events")
    assert again.status_code == 401


def test_anonymous_watchers_are_not_told_a_destinations_own_error(api):
    failing = FixedAnswerServer(500)
    try:
        destination_id = api.webhook(failing.url)
        session_id = api.session(destination_ids=[destination_id])
        anonymous = SseReader(f"{api.server.url}/api/v1/upload/{session_id}/events")
        keyed = SseReader(
            f"{api.server.url}/api/v1/sessions/{session_id}/events",
            {"Authorization": f"Bearer {api.persona.plain_key}"},
        )
        try:
            api.upload(session_id)
            [told_anonymous] = [
                frame for frame in anonymous.events_until("image:failed") if frame.event == "image:failed"
            ]
            [told_keyed] = [frame for frame in keyed.events_until("image:failed") if frame.event == "image:failed"]
        finally:
            anonymous.close()
            keyed.close()
    finally:
        failing.stop()
    assert told_anonymous.data["error"] == "The delivery failed; it will be tried again."
    assert "500" in told_keyed.data["error"]
    assert told_anonymous.data["final"] is told_keyed.data["final"] is False


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


def test_a_stream_ends_when_its_key_is_revoked_or_its_browser_signs_out(api):
    """A stream outlives the request that opened it: it asks again every APERTUR_SSE_RECHECK_SECONDS (0.5 here)."""
    from django.contrib.sessions.models import Session
    from django.test import Client

    from projects.models import ApiKey

    session_id = api.session(long_polling=True)
    by_key = SseReader(
        f"{api.server.url}/api/v1/sessions/{session_id}/events", {"Authorization": f"Bearer {api.persona.plain_key}"}
    )
    browser = Client()
    browser.force_login(api.persona.user)
    cookie = browser.cookies["sessionid"].value
    by_cookie = SseReader(
        f"{api.server.url}/api/v1/sessions/{session_id}/events?project={api.persona.project.pk}",
        {"Cookie": f"sessionid={cookie}"},
    )
    assert by_key.status == by_cookie.status == 200
    assert by_key.next().event == by_cookie.next().event == "connected"

    Session.objects.filter(session_key=cookie).delete()  # signed out
    assert by_cookie.ended.wait(10) and not by_key.ended.is_set()
    ApiKey.objects.filter(pk=api.persona.api_key.pk).update(is_active=False)
    assert by_key.ended.wait(10)
