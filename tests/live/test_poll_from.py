"""`pollFrom` on delivery status (docs/api.md "Delivery status"): answers at once when the session changed after
it, else waits for the change, at most APERTUR_POLL_FROM_MAX_SECONDS."""

import threading
import time

import httpx
import pytest
from apertur_sdk import Apertur

from tests.factories import image_bytes, make_persona
from tests.sessions_app.helpers import create_session


def delivery_status(api_client, persona, session_id, **params):
    return api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", params, **persona.auth)


@pytest.mark.django_db
def test_poll_from_before_the_last_change_answers_at_once(api_client):
    persona = make_persona("poller")
    session_id = create_session(api_client, persona)["id"]
    first = delivery_status(api_client, persona, session_id).json()
    started = time.monotonic()
    response = delivery_status(api_client, persona, session_id, pollFrom="2020-01-01T00:00:00Z")
    assert response.status_code == 200
    assert response.json()["lastChanged"] == first["lastChanged"]
    assert time.monotonic() - started < 1


@pytest.mark.django_db
def test_poll_from_at_the_last_change_waits_then_answers_the_unchanged_snapshot(api_client, settings):
    settings.APERTUR_POLL_FROM_MAX_SECONDS = 0.5
    persona = make_persona("poller")
    session_id = create_session(api_client, persona)["id"]
    first = delivery_status(api_client, persona, session_id).json()
    started = time.monotonic()
    response = delivery_status(api_client, persona, session_id, pollFrom=first["lastChanged"])
    waited = time.monotonic() - started
    assert response.status_code == 200 and response.json() == first
    assert 0.5 <= waited < 3
    assert response["X-RateLimit-Limit"]


@pytest.mark.django_db
def test_poll_from_that_is_not_a_date_is_a_validation_error(api_client):
    persona = make_persona("poller")
    session_id = create_session(api_client, persona)["id"]
    response = delivery_status(api_client, persona, session_id, pollFrom="yesterday")
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR" and "pollFrom" in response.json()["fields"]


@pytest.mark.django_db
def test_poll_from_on_another_projects_session_is_not_found_without_waiting(api_client, settings):
    settings.APERTUR_POLL_FROM_MAX_SECONDS = 5
    session_id = create_session(api_client, make_persona("owner"))["id"]
    started = time.monotonic()
    response = delivery_status(api_client, make_persona("stranger"), session_id, pollFrom="2030-01-01T00:00:00Z")
    assert response.status_code == 404 and time.monotonic() - started < 2


def test_official_client_poll_from_returns_within_a_second_of_an_upload_and_of_its_delivery(
    live_server_process, webhook_receiver
):
    persona = make_persona("sdk-poller")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        destination = sdk.destinations.create(
            str(persona.project.pk),
            type="webhook",
            name="r",
            config={"url": f"{webhook_receiver.url}/in", "secret": "poll-secret"},
        )
        session = sdk.sessions.create(destination_ids=[destination["id"]])
        baseline = sdk.sessions.delivery_status(session["id"])

        answers: list[tuple[float, dict]] = []

        def wait_for_change(since: str) -> None:
            answers.append((time.monotonic(), sdk.sessions.delivery_status(session["id"], poll_from=since)))

        waiter = threading.Thread(target=wait_for_change, args=(baseline["lastChanged"],))
        waiter.start()
        time.sleep(0.3)  # the waiter is parked (nothing to await from outside the server)
        assert answers == []
        uploaded_at = time.monotonic()
        sdk.upload.image(session["id"], image_bytes(), filename="a.jpg")
        waiter.join(timeout=10)
        [(answered_at, changed)] = answers
        assert answered_at - uploaded_at < 1
        assert changed["lastChanged"] > baseline["lastChanged"]
        assert [image["filename"] for image in changed["images"]] == ["a.jpg"]

        # Follow the changes until the delivery is reported, each answer coming from a wake, not a timer.
        status = changed
        for _ in range(10):
            if status["images"][0]["deliveries"][0]["status"] == "delivered":
                break
            asked = time.monotonic()
            status = sdk.sessions.delivery_status(session["id"], poll_from=status["lastChanged"])
            assert time.monotonic() - asked < 5
        assert status["images"][0]["deliveries"][0]["status"] == "delivered"


def test_a_waiting_endpoint_refuses_a_host_the_server_does_not_serve(live_server_process):
    persona = make_persona("host-check")
    auth = {"Authorization": f"Bearer {persona.plain_key}"}
    session = httpx.post(f"{live_server_process.url}/api/v1/upload-sessions", json={"long_polling": True}, headers=auth)
    path = f"/api/v1/upload-sessions/{session.json()['id']}/delivery-status"
    refused = httpx.get(live_server_process.url + path, headers={**auth, "Host": "evil.example"})
    assert refused.status_code == 400 and refused.json()["code"] == "VALIDATION_ERROR"
    served = httpx.get(live_server_process.url + path, headers=auth)
    assert served.status_code == 200
    assert served.headers["x-frame-options"] == "DENY" and served.headers["x-content-type-options"] == "nosniff"
