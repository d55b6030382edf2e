"""The waiting machinery (apertur/api/waiting.py): a shared look survives the waiter that started it; an error of a
later look is the JSON error envelope, not a 500."""

import asyncio
import json
import threading

import pytest
from django.test import RequestFactory

from apertur import events
from apertur.api.waiting import Waiting, WaitResponse, _shared_load, waiting_view
from apertur.errors import AppError


def test_a_shared_load_survives_the_cancellation_of_the_waiter_that_started_it():
    release = threading.Event()

    def slow_loader() -> str:
        release.wait(5)
        return "the document"

    async def scenario() -> str:
        first = asyncio.create_task(_shared_load("key", "1-0", slow_loader))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(_shared_load("key", "1-0", slow_loader))
        await asyncio.sleep(0.05)
        first.cancel()  # its client went away
        release.set()
        return await asyncio.wait_for(second, 5)

    assert asyncio.run(scenario()) == "the document"


@pytest.mark.django_db
def test_an_app_error_of_a_later_look_is_answered_as_json(settings):
    settings.APERTUR_WAIT_ON_CALLING_THREAD = True

    def view(request, session_id):
        def gone():
            raise AppError(404, "NOT_FOUND", "Session not found.")

        return WaitResponse(Waiting(timeout=0.05, on_timeout=gone, check=lambda: None))

    async def scenario():
        request = RequestFactory().get("/anything")
        return await waiting_view(view)(request, session_id="sess_x")

    response = asyncio.run(scenario())
    assert response.status_code == 404
    assert json.loads(response.content)["code"] == "NOT_FOUND"


def test_an_unavailable_event_bus_is_a_503(monkeypatch):
    class Refusing:
        async def __aenter__(self):
            raise events.EventBusUnavailable()

        async def __aexit__(self, *exc):
            return False

    monkeypatch.setattr(events, "listen", lambda session_id, after=None: Refusing())

    async def scenario():
        return await waiting_view(lambda request, session_id: None)(RequestFactory().get("/x"), session_id="sess_x")

    response = asyncio.run(scenario())
    assert response.status_code == 503 and json.loads(response.content)["code"] == "EVENTS_UNAVAILABLE"


@pytest.mark.django_db
def test_an_event_stream_with_the_event_bus_down_is_a_503(api_client, monkeypatch):
    from tests.factories import make_persona
    from tests.sessions_app.helpers import create_session

    persona = make_persona("bus-down")
    session_id = create_session(api_client, persona)["id"]

    def down(session_id):
        raise events.EventBusUnavailable("connection refused")

    monkeypatch.setattr(events, "latest_id", down)
    response = api_client.get(f"/api/v1/sessions/{session_id}/events", **persona.auth)
    assert response.status_code == 503 and response.json()["code"] == "EVENTS_UNAVAILABLE"
