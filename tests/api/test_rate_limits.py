"""Rate limits (docs/api.md "Rate limits"): per key and scope, X-RateLimit-* headers on every answer, 429 RATE_LIMITED
past the limit."""

from types import SimpleNamespace

import pytest

from apertur.api import throttling
from projects.services import api_key_create
from tests.sessions_app.helpers import create_session

CREATE = "/api/v1/upload-sessions"


# Half a minute into a fixed one-minute window, which resets at WINDOW_END.
NOW = 1_800_000_030.0
WINDOW_END = 1_800_000_060


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """Windows are fixed minutes: hold the limiter's clock so a test never straddles two of them."""
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: NOW))


@pytest.fixture
def shrunk_limits(settings):
    settings.APERTUR_RATE_LIMITS = {**settings.APERTUR_RATE_LIMITS, "session_create": 2, "upload_page": 2}
    return settings.APERTUR_RATE_LIMITS


def create(api_client, auth: dict):
    return api_client.post(CREATE, {"long_polling": True}, format="json", **auth)


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, response.content
    body = response.json()
    assert (body["code"], body["statusCode"], body["error"]) == ("RATE_LIMITED", 429, "Too Many Requests")
    assert response["Retry-After"] == "30"  # seconds until WINDOW_END


def test_key_responses_carry_the_rate_limit_headers(api_client, owner):
    first = create(api_client, owner.auth)
    second = create(api_client, owner.auth)

    assert first["X-RateLimit-Limit"] == "100"
    assert int(first["X-RateLimit-Remaining"]) == 99
    assert int(second["X-RateLimit-Remaining"]) == 98
    assert first["X-RateLimit-Reset"] == second["X-RateLimit-Reset"] == str(WINDOW_END)


def test_each_scope_reports_its_own_limit(api_client, owner):
    session = create_session(api_client, owner)

    status = api_client.get(f"/api/v1/upload-sessions/{session['id']}/delivery-status", **owner.auth)
    update = api_client.patch(f"/api/v1/upload-sessions/{session['id']}", {}, format="json", **owner.auth)

    assert status["X-RateLimit-Limit"] == "300"
    assert update["X-RateLimit-Limit"] == "200"


def test_refused_requests_carry_the_headers_too(api_client, owner):
    response = api_client.post(CREATE, {}, format="json", **owner.auth)

    assert response.status_code == 400
    assert response["X-RateLimit-Limit"] == "100"


def test_upload_page_responses_carry_the_rate_limit_headers(api_client, owner):
    session = create_session(api_client, owner)

    response = api_client.get(f"/api/v1/upload/{session['id']}/session")

    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("120", "119")
    assert response["X-RateLimit-Reset"] == str(WINDOW_END)


def test_session_creation_past_the_limit_is_429_with_retry_after(api_client, owner, shrunk_limits):
    assert create(api_client, owner.auth).status_code == 201
    assert create(api_client, owner.auth).status_code == 201

    refused = create(api_client, owner.auth)

    assert_rate_limited(refused)
    assert refused["X-RateLimit-Limit"] == "2"
    assert refused["X-RateLimit-Remaining"] == "0"


def test_limited_request_creates_nothing(api_client, owner, shrunk_limits):
    from sessions_app.models import UploadSession

    for _ in range(3):
        create(api_client, owner.auth)

    assert UploadSession.objects.count() == 2


def test_limits_are_per_key(api_client, owner, shrunk_limits):
    _, other_key = api_key_create(project=owner.project, label="second")
    create(api_client, owner.auth)
    create(api_client, owner.auth)
    assert_rate_limited(create(api_client, owner.auth))

    assert create(api_client, {"HTTP_AUTHORIZATION": f"Bearer {other_key}"}).status_code == 201


def test_limits_are_per_scope(api_client, owner, shrunk_limits):
    session_id = create(api_client, owner.auth).json()["id"]
    create(api_client, owner.auth)
    assert_rate_limited(create(api_client, owner.auth))

    response = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **owner.auth)

    assert response.status_code == 200


def test_upload_page_is_limited_per_client_ip_and_session(api_client, owner, shrunk_limits):
    first = create(api_client, owner.auth).json()["id"]
    second = create(api_client, owner.auth).json()["id"]
    page = f"/api/v1/upload/{first}/session"
    api_client.get(page)
    api_client.get(page)

    assert_rate_limited(api_client.get(page))
    assert api_client.get(page, REMOTE_ADDR="198.51.100.4").status_code == 200
    assert api_client.get(f"/api/v1/upload/{second}/session").status_code == 200


def test_unauthenticated_requests_do_not_spend_a_keys_budget(api_client, owner, shrunk_limits):
    for _ in range(3):
        api_client.post(CREATE, {"long_polling": True}, format="json", HTTP_AUTHORIZATION="Bearer aptr_live_nope")

    assert create(api_client, owner.auth).status_code == 201
