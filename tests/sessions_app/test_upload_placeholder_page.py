"""/u/<session_id>, the session's upload_url: an HTML page saying the session's state (the upload page is to come)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app.models import UploadSession
from tests.factories import image_bytes, make_persona
from tests.sessions_app.helpers import create_session, upload

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@pytest.fixture
def session(db, api_client) -> dict:
    return create_session(api_client, make_persona("owner"), max_images=3)


def get_page(client, session_id: str):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/u/{session_id}")
    writes = [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith(WRITES)]
    assert writes == [], "a GET of the upload page must not write"
    return response


def test_the_session_upload_url_answers_an_html_page(client, session):
    assert session["upload_url"].endswith(f"/u/{session['id']}")
    response = get_page(client, session["id"])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "Waiting for photos: none has been uploaded yet." in page
    assert "coming soon" in page and session["id"] in page


def test_the_page_counts_the_photos_received(client, api_client, session):
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    page = get_page(client, session["id"]).content.decode()
    assert "Receiving photos: 1 of 3 uploaded so far." in page


def test_a_session_past_its_expiry_reads_as_expired_and_the_get_does_not_close_it(client, session):
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = get_page(client, session["id"])

    assert response.status_code == 200
    assert "This link has expired and no longer accepts photos." in response.content.decode()
    assert UploadSession.objects.get(pk=session["id"]).closed_at is None  # the sweeper closes it, not a read


def test_a_completed_session_says_it_is_done(client, session):
    UploadSession.objects.filter(pk=session["id"]).update(
        closed_at=timezone.now(), close_reason="completed", status="completed"
    )
    assert "Done: every photo was received and delivered." in get_page(client, session["id"]).content.decode()


@pytest.mark.parametrize("session_id", ["sess_doesnotexist", "sess_%00nul"])
def test_an_unknown_session_answers_a_friendly_html_404(client, db, session_id):
    response = get_page(client, session_id)

    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "This upload link does not exist" in response.content.decode()


def test_the_upload_page_only_answers_reads(client, session):
    assert client.post(f"/u/{session['id']}").status_code == 405
    assert client.head(f"/u/{session['id']}").status_code == 200
