"""A GET never writes: every read endpoint runs SELECTs only, even for a session past its expiry that the sweeper
has not closed yet (it reads as expired) and before the encryption key pair exists (it is not made by a read).

The one exception is the held poll, which leases the image it hands out (docs/api.md "Pull delivery")."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from delivery.event_webhooks import event_webhook_create
from projects.models import ApiKey
from sessions_app.models import UploadEncryptionKey, UploadSession
from tests.api.test_routes import ROUTES
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session, upload, webhook_destination

# GETs that write on purpose, and what they write.
WRITING_GETS = {"sessions_app:session-held-poll": "the lease of the image it answers with"}
# GETs that do not touch the database at all (docs/api.md "OpenAPI").
DATABASE_FREE_GETS = {"openapi-schema": "/api/schema/", "openapi-docs": "/api/docs/"}


def get_route_names() -> set[str]:
    """The names of every route whose view answers GET (test_routes proves ROUTES lists every API route)."""
    routes = {name for name, _, _, view in ROUTES if hasattr(view, "get")}
    return routes - set(WRITING_GETS) - set(DATABASE_FREE_GETS) | {"healthz"}


@pytest.fixture
def world(api_client, owner) -> dict:
    """A password-protected long-polling session with one image and its delivery, past its expiry but not yet
    swept, and an event webhook with the deliveries of those events."""
    destination = webhook_destination(owner)
    # An event webhook wanting every topic: its deliveries list has rows to read.
    webhook, _ = event_webhook_create(project=owner.project, url="http://127.0.0.1:9/hook", topics=["*"])
    session = create_session(
        api_client, owner, long_polling=True, destination_ids=[str(destination.pk)], password="open-sesame"
    )
    response = upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD="open-sesame")
    assert response.status_code == 201, response.content
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Authentication records lastUsedAt at most once a minute; a key used just now makes that write not due.
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=timezone.now())
    return {
        "session_id": session["id"],
        "project_id": str(owner.project.pk),
        "image_id": response.json()["id"],
        "webhook_id": str(webhook.pk),
    }


def reads(world: dict) -> dict[str, str]:
    """Route name → a URL that GETs it, for every GET route."""
    session = {"session_id": world["session_id"]}
    image = {"image_id": world["image_id"]}
    return {
        "sessions_app:session-poll": reverse("sessions_app:session-poll", kwargs=session),
        "sessions_app:session-image": reverse("sessions_app:session-image", kwargs={**session, **image}),
        "sessions_app:image-download": reverse("sessions_app:image-download", kwargs=image),
        "sessions_app:upload-session": reverse("sessions_app:upload-session", kwargs=session),
        "sessions_app:session-qr": reverse("sessions_app:session-qr", kwargs=session) + "?format=svg",
        "sessions_app:session-list": reverse("sessions_app:session-list"),
        "sessions_app:session-recent": reverse("sessions_app:session-recent"),
        "sessions_app:encryption-server-key": reverse("sessions_app:encryption-server-key"),
        "sessions_app:encryption-key": reverse("sessions_app:encryption-key"),
        "delivery:session-delivery-status": reverse("delivery:session-delivery-status", kwargs=session),
        "sessions_app:session-events": reverse("sessions_app:session-events", kwargs=session),
        "sessions_app:upload-events": reverse("sessions_app:upload-events", kwargs=session),
        "destinations:destination-list": reverse(
            "destinations:destination-list", kwargs={"project_id": world["project_id"]}
        ),
        "destinations:destination-types": reverse("destinations:destination-types"),
        "projects:key-list": reverse("projects:key-list", kwargs={"project_id": world["project_id"]}),
        "delivery:webhook-list": reverse("delivery:webhook-list", kwargs={"project_id": world["project_id"]}),
        "delivery:webhook-deliveries": reverse(
            "delivery:webhook-deliveries", kwargs={"project_id": world["project_id"], "webhook_id": world["webhook_id"]}
        ),
        "sessions_app:upload-list": reverse("sessions_app:upload-list"),
        "sessions_app:upload-recent": reverse("sessions_app:upload-recent"),
        "sessions_app:stats": reverse("sessions_app:stats"),
        "healthz": reverse("healthz"),
    }


def assert_only_selects(captured: CaptureQueriesContext, url: str) -> None:
    statements = [query["sql"] for query in captured.captured_queries]
    assert statements, f"GET {url} ran no query at all: the capture is not watching"
    writes = [sql for sql in statements if not sql.lstrip().upper().startswith("SELECT")]
    assert writes == [], f"GET {url} wrote"


def test_every_get_route_is_checked_here(world):
    assert set(reads(world)) == get_route_names()


@pytest.mark.parametrize("url", DATABASE_FREE_GETS.values())
def test_the_schema_and_its_docs_run_no_query(db, api_client, url):
    with CaptureQueriesContext(connection) as captured:
        assert api_client.get(url).status_code == 200
    assert [query["sql"] for query in captured.captured_queries] == []


def test_no_get_endpoint_writes_and_an_overdue_session_reads_as_expired(api_client, owner, world):
    answers = {}
    for name, url in reads(world).items():
        with CaptureQueriesContext(connection) as captured:
            response = api_client.get(url, **owner.auth, HTTP_X_SESSION_PASSWORD="open-sesame")
        assert response.status_code == 200, (name, response.content)
        assert_only_selects(captured, url)
        answers[name] = response

    assert answers["sessions_app:upload-session"].json()["status"] == "expired"
    assert answers["delivery:session-delivery-status"].json()["status"] == "expired"
    assert answers["sessions_app:session-list"].json()["data"][0]["status"] == "expired"
    assert answers["sessions_app:session-recent"].json()[0]["status"] == "expired"
    stored = UploadSession.objects.get(pk=world["session_id"])
    assert (stored.closed_at, stored.close_reason, stored.status) == (None, "", "uploading")  # left to the sweeper


def test_before_the_key_pair_exists_reads_say_so_and_do_not_make_it(api_client, owner, world):
    UploadEncryptionKey.objects.all().delete()

    for name in ("sessions_app:encryption-server-key", "sessions_app:encryption-key"):
        url = reverse(name)
        with CaptureQueriesContext(connection) as captured:
            response = api_client.get(url, **owner.auth, HTTP_X_SESSION_PASSWORD="open-sesame")
        assert_only_selects(captured, url)
        assert response.status_code == 503
        assert response.json()["code"] == "ENCRYPTION_KEY_UNAVAILABLE"

    url = reverse("sessions_app:upload-session", kwargs={"session_id": world["session_id"]})
    with CaptureQueriesContext(connection) as captured:
        response = api_client.get(url)
    assert_only_selects(captured, url)
    assert response.status_code == 200
    assert response.json()["serverPublicKey"] is None
    assert not UploadEncryptionKey.objects.exists()


def test_creating_a_session_makes_the_key_pair_the_reads_then_show(api_client, owner):
    assert not UploadEncryptionKey.objects.exists()

    session = create_session(api_client, owner)

    key = UploadEncryptionKey.objects.get(is_current=True).public_key_pem
    assert api_client.get(reverse("sessions_app:encryption-server-key"), **owner.auth).json() == {"publicKey": key}
    public = api_client.get(reverse("sessions_app:upload-session", kwargs={"session_id": session["id"]})).json()
    assert public["serverPublicKey"] == key


def test_the_held_poll_writes_only_the_lease_of_the_image_it_answers_with(api_client, owner, world):
    url = reverse("sessions_app:session-held-poll", kwargs={"session_id": world["session_id"]})

    with CaptureQueriesContext(connection) as captured:
        response = api_client.get(url, **owner.auth)

    assert response.status_code == 200 and response.json()["image_id"] == world["image_id"]
    statements = [query["sql"].lstrip().upper() for query in captured.captured_queries]
    writes = [sql for sql in statements if not sql.startswith(("SELECT", "SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(writes) == 1 and writes[0].startswith('UPDATE "SESSIONS_APP_IMAGE" SET "POLL_LEASED_UNTIL"'), writes
