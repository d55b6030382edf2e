"""Signed-in dashboard users calling the API with their browser session (docs/api.md "Dashboard access")."""

import pytest
from django.contrib.auth import get_user_model
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from rest_framework.test import APIClient

from apertur import events
from delivery.models import Delivery
from projects.models import Membership
from sessions_app.models import UploadSession
from tests.delivery.test_engine import upload
from tests.factories import image_bytes, make_persona
from tests.sessions_app.helpers import create_session

pytestmark = pytest.mark.django_db
WEBHOOK_BODY = {"type": "webhook", "name": "Hook", "config": {"url": "http://127.0.0.1:9/in", "secret": "s3cret-value"}}


def _member(persona, name: str, role: str):
    user = get_user_model().objects.create_user(username=name, email=f"{name}@example.test", password="x" * 12)
    Membership.objects.create(user=user, project=persona.project, role=role)
    return user


def _browser(user, *, csrf: bool = True) -> APIClient:
    """A client with the user's session cookie; with `csrf`, the csrftoken cookie and its header, as the
    dashboard's pages send them."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    if csrf:
        secret = _get_new_csrf_string()
        client.cookies["csrftoken"] = secret
        client.credentials(HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
    return client


def _project(persona) -> dict[str, str]:
    return {"HTTP_X_APTR_PROJECT": str(persona.project.pk)}


def test_a_member_reads_their_projects_sessions_with_the_browser_session(api_client):
    persona, stranger = make_persona("owner-d"), make_persona("stranger-d")
    mine = create_session(api_client, persona)["id"]
    create_session(api_client, stranger)
    member = _member(persona, "member-d", Membership.Role.MEMBER)

    response = _browser(member).get("/api/v1/sessions", **_project(persona))

    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["data"]] == [mine]
    assert response["X-RateLimit-Limit"]


def test_the_project_must_be_named_and_be_the_users_own():
    persona, stranger = make_persona("owner-e"), make_persona("stranger-e")
    client = _browser(persona.user)

    missing = client.get("/api/v1/sessions")
    foreign = client.get("/api/v1/sessions", **_project(stranger))
    malformed = client.get("/api/v1/sessions", HTTP_X_APTR_PROJECT="not-a-uuid")

    assert (missing.status_code, missing.json()["code"]) == (400, "PROJECT_REQUIRED")
    assert (foreign.status_code, foreign.json()["code"]) == (404, "NOT_FOUND")
    assert (malformed.status_code, malformed.json()["code"]) == (404, "NOT_FOUND")


def test_without_a_session_or_key_it_is_401_and_an_inactive_user_has_no_access():
    persona = make_persona("owner-f")
    anonymous = APIClient().get("/api/v1/sessions", **_project(persona))
    persona.user.is_active = False
    persona.user.save()
    inactive = _browser(persona.user).get("/api/v1/sessions", **_project(persona))

    assert anonymous.status_code == 401 and anonymous.json()["code"] == "AUTHENTICATION_FAILED"
    assert inactive.status_code == 401


def test_writes_need_the_csrf_token():
    persona = make_persona("owner-g")
    client = _browser(persona.user, csrf=False)

    response = client.post("/api/v1/upload-sessions", {"long_polling": True}, format="json", **_project(persona))

    assert (response.status_code, response.json()["code"]) == (403, "CSRF_FAILED")
    assert not UploadSession.objects.exists()


def test_a_member_makes_a_session_without_a_key():
    persona = make_persona("owner-h")
    member = _member(persona, "member-h", Membership.Role.MEMBER)

    response = _browser(member).post(
        "/api/v1/upload-sessions", {"long_polling": True, "label": "Claim 4711"}, format="json", **_project(persona)
    )

    assert response.status_code == 201, response.content
    session = UploadSession.objects.get(pk=response.json()["id"])
    assert (session.project_id, session.api_key_id, session.label) == (persona.project.pk, None, "Claim 4711")


def test_a_session_without_a_key_takes_the_projects_defaults():
    persona = make_persona("owner-i")
    response = _browser(persona.user).post("/api/v1/upload-sessions", {}, format="json", **_project(persona))
    assert response.status_code == 400 and "destination_ids" in response.json()["fields"]


@pytest.mark.parametrize(
    ("role", "expected"),
    [(Membership.Role.MEMBER, 403), (Membership.Role.ADMIN, 201), (Membership.Role.OWNER, 201)],
)
def test_destinations_are_changed_by_owners_and_admins_only(role, expected):
    persona = make_persona(f"owner-j-{role}")
    user = _member(persona, f"user-j-{role}", role)

    response = _browser(user).post(
        f"/api/v1/projects/{persona.project.pk}/destinations", WEBHOOK_BODY, format="json", **_project(persona)
    )

    assert response.status_code == expected, response.content
    if expected == 403:
        assert response.json()["code"] == "FORBIDDEN"


def test_a_member_reads_keys_but_cannot_make_one():
    persona = make_persona("owner-k")
    member = _member(persona, "member-k", Membership.Role.MEMBER)
    client = _browser(member)

    listed = client.get(f"/api/v1/projects/{persona.project.pk}/keys", **_project(persona))
    made = client.post(
        f"/api/v1/projects/{persona.project.pk}/keys", {"label": "x"}, format="json", **_project(persona)
    )

    assert listed.status_code == 200 and len(listed.json()) == 1
    assert made.status_code == 403


def test_a_member_retries_a_failed_delivery(api_client):
    persona = make_persona("owner-l")
    member = _member(persona, "member-l", Membership.Role.MEMBER)
    destination = api_client.post(
        f"/api/v1/projects/{persona.project.pk}/destinations", WEBHOOK_BODY, format="json", **persona.auth
    ).json()
    session = create_session(api_client, persona, destination_ids=[destination["id"]], long_polling=False)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    delivery = Delivery.objects.get(image__session_id=session["id"])
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, last_error="boom")

    response = _browser(member).post(
        f"/api/v1/upload-sessions/{session['id']}/deliveries/{delivery.pk}/retry", format="json", **_project(persona)
    )

    assert response.status_code == 200, response.content
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING


def test_a_key_request_is_the_keys_even_with_a_browser_session(api_client):
    persona, other = make_persona("owner-m"), make_persona("other-m")
    create_session(api_client, other)
    client = _browser(persona.user)

    response = client.get("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {other.plain_key}", **_project(persona))

    assert response.status_code == 200
    assert {row["id"] for row in response.json()["data"]} == set(
        UploadSession.objects.filter(project=other.project).values_list("id", flat=True)
    )


def test_the_event_stream_takes_the_project_from_the_query(api_client, monkeypatch):
    persona, stranger = make_persona("owner-n"), make_persona("stranger-n")
    session_id = create_session(api_client, persona)["id"]
    client = _browser(persona.user)

    def down(session_id):
        raise events.EventBusUnavailable("connection refused")

    monkeypatch.setattr(events, "latest_id", down)
    foreign = client.get(f"/api/v1/sessions/{session_id}/events?project={stranger.project.pk}")
    # Past authentication: the stream itself answers (here: its event bus is down).
    own = client.get(f"/api/v1/sessions/{session_id}/events?project={persona.project.pk}")

    assert foreign.status_code == 404
    assert own.status_code == 503 and own.json()["code"] == "EVENTS_UNAVAILABLE"


def test_the_project_in_the_query_is_taken_on_the_event_stream_only():
    """Elsewhere it would let another site's link make a signed-in browser call a GET (a held poll leases an image)."""
    persona = make_persona("owner-o")
    client = _browser(persona.user)

    response = client.get(f"/api/v1/sessions?project={persona.project.pk}")
    polled = client.get(f"/api/v1/sessions/sess_x/poll?project={persona.project.pk}")

    assert (response.status_code, response.json()["code"]) == (400, "PROJECT_REQUIRED")
    assert polled.status_code == 400


def test_a_proxys_basic_authorization_header_leaves_the_cookie_to_speak():
    persona = make_persona("owner-p")

    response = _browser(persona.user).get(
        "/api/v1/sessions", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz", **_project(persona)
    )

    assert response.status_code == 200


def test_the_browser_session_is_read_where_no_middleware_ran():
    """The event stream and the long polls are served without middleware (apertur/api/waiting.py): the
    authentication reads the session cookie itself there."""
    from django.conf import settings
    from django.test import RequestFactory
    from rest_framework.request import Request

    from apertur.api.authentication import DashboardPrincipal, DashboardSessionAuthentication

    persona, stranger = make_persona("owner-q"), make_persona("stranger-q")
    client = APIClient()
    client.force_login(persona.user)
    bare = RequestFactory().get("/api/v1/sessions/sess_x/events", HTTP_X_APTR_PROJECT=str(persona.project.pk))
    bare.COOKIES[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    signed_out = RequestFactory().get("/api/v1/sessions/sess_x/events", HTTP_X_APTR_PROJECT=str(persona.project.pk))
    signed_out.COOKIES[settings.SESSION_COOKIE_NAME] = "not-a-session"

    principal, _ = DashboardSessionAuthentication().authenticate(Request(bare))

    assert isinstance(principal, DashboardPrincipal) and principal.project == persona.project
    assert principal.project != stranger.project
    assert DashboardSessionAuthentication().authenticate(Request(signed_out)) is None


def test_a_session_cookie_no_key_could_be_counts_as_none():
    """A quoted cookie may unquote to a NUL, which PostgreSQL refuses: that was a 500 on every page and API call."""
    from django.test import Client

    persona = make_persona("owner-r")
    client = Client()
    client.cookies["sessionid"] = "\x00aaaaaaaaaaaaaaa"

    page = client.get(f"/projects/{persona.project.pk}/keys")
    api = client.get("/api/v1/sessions", HTTP_X_APTR_PROJECT=str(persona.project.pk))

    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert api.status_code == 401
