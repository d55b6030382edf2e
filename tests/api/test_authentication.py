"""API-key authentication (docs/api.md "Authentication"): bearer keys, key restrictions, request signing."""

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from apertur_sdk.signature import sign_request as sdk_sign_request
from django.utils import timezone

from apertur.api import authentication
from apertur.api.authentication import request_signature
from projects.models import ApiKey
from tests.factories import image_bytes
from tests.sessions_app.helpers import upload

CREATE = "/api/v1/upload-sessions"
SIGNING_SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["statusCode"] == status


# --- bearer keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer aptr_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Bearer",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "aptr_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Bearer \xe9\xe8",
    ],
    ids=["missing", "unknown key", "no token", "blank token", "basic", "no scheme", "latin-1 junk"],
)
def test_request_without_a_valid_key_is_401_authentication_failed(api_client, owner, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}

    response = api_client.post(CREATE, {"long_polling": True}, format="json", **extra)

    assert_error(response, 401, "AUTHENTICATION_FAILED")


def test_missing_key_answer_names_the_bearer_scheme(api_client, db):
    response = api_client.get("/api/v1/upload-sessions/sess_x/delivery-status")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_inactive_key_is_401(api_client, owner):
    ApiKey.objects.filter(pk=owner.api_key.pk).update(is_active=False)

    assert_error(
        api_client.post(CREATE, {"long_polling": True}, format="json", **owner.auth), 401, "AUTHENTICATION_FAILED"
    )


def test_deleted_key_is_401(api_client, owner):
    ApiKey.objects.filter(pk=owner.api_key.pk).delete()

    assert_error(
        api_client.post(CREATE, {"long_polling": True}, format="json", **owner.auth), 401, "AUTHENTICATION_FAILED"
    )


def test_key_of_a_prefix_only_is_401(api_client, owner):
    response = api_client.post(
        CREATE, {"long_polling": True}, format="json", HTTP_AUTHORIZATION=f"Bearer {owner.plain_key[:-1]}"
    )

    assert_error(response, 401, "AUTHENTICATION_FAILED")


def test_valid_key_works_and_marks_the_key_used(api_client, owner):
    assert owner.api_key.last_used_at is None

    response = api_client.post(CREATE, {"long_polling": True}, format="json", **owner.auth)

    assert response.status_code == 201, response.content
    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(api_client, owner):
    a_while_ago = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=a_while_ago)
    api_client.post(CREATE, {"long_polling": True}, format="json", **owner.auth)
    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at == a_while_ago

    long_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=long_ago)
    api_client.post(CREATE, {"long_polling": True}, format="json", **owner.auth)
    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at > long_ago + timedelta(minutes=1)


def test_bearer_scheme_is_case_insensitive(api_client, owner):
    response = api_client.post(
        CREATE, {"long_polling": True}, format="json", HTTP_AUTHORIZATION=f"bearer {owner.plain_key}"
    )

    assert response.status_code == 201, response.content


# --- key restrictions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "remote", "status"),
    [
        (["10.0.0.0/8"], "127.0.0.1", 403),
        (["127.0.0.2"], "127.0.0.1", 403),
        (["127.0.0.1"], "::1", 403),
        (["127.0.0.1"], "127.0.0.1", 201),
        (["192.0.2.0/24", "127.0.0.0/8"], "127.0.0.1", 201),
        (["2001:db8::/32"], "2001:db8::5", 201),
        (["not-an-address", "127.0.0.1"], "127.0.0.1", 201),  # a malformed entry matches nothing, never a 500
        (["not-an-address"], "127.0.0.1", 403),
    ],
)
def test_ip_allow_list_refuses_other_addresses_with_403(api_client, owner, allowed, remote, status):
    owner.api_key.allowed_ips = allowed
    owner.api_key.save()

    response = api_client.post(CREATE, {"long_polling": True}, format="json", REMOTE_ADDR=remote, **owner.auth)

    assert response.status_code == status, response.content
    if status == 403:
        assert response.json()["code"] == "IP_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 201),
        ({"HTTP_ORIGIN": "https://app.example.com"}, 201),
        ({"HTTP_ORIGIN": "https://APP.example.com:8443"}, 201),
        ({"HTTP_REFERER": "https://app.example.com/upload?x=1"}, 201),
        ({"HTTP_ORIGIN": "https://shop.partner.test"}, 201),
        ({"HTTP_ORIGIN": "https://evil.test"}, 403),
        ({"HTTP_ORIGIN": "https://app.example.com.evil.test"}, 403),
        ({"HTTP_ORIGIN": "https://partner.test"}, 403),
        ({"HTTP_REFERER": "https://evil.test/page"}, 403),
        ({"HTTP_ORIGIN": "null"}, 403),
        ({"HTTP_ORIGIN": "http://[::1"}, 403),
    ],
)
def test_allowed_domains_are_checked_against_origin_or_referer_when_present(api_client, owner, headers, status):
    owner.api_key.allowed_domains = ["app.example.com", "*.partner.test"]
    owner.api_key.save()

    response = api_client.post(CREATE, {"long_polling": True}, format="json", **headers, **owner.auth)

    assert response.status_code == status, response.content
    if status == 403:
        assert response.json()["code"] == "FORBIDDEN"


# --- request signing -------------------------------------------------------------------------------


def test_request_signature_matches_the_spec_known_answer_for_a_post():
    signature = request_signature(SIGNING_SECRET, "1800000000", "POST", "/api/v1/upload-sessions", b'{"a":1}')

    assert signature == "sha256=d5bf88c946aa6cf4397749eacd05cf058e6828878f9b1c84830cb7c07a234d3e"


def test_request_signature_matches_the_spec_known_answer_for_a_get_with_empty_body():
    signature = request_signature(SIGNING_SECRET, "1800000000", "GET", "/api/v1/uploads/abc", b"")

    assert signature == "sha256=f53cf714f69187170c4fdb22c53e0b53578dcbcb61e63b56948d5e1fd8294a3e"


@pytest.mark.parametrize(
    ("method", "path", "body"), [("POST", "/api/v1/upload-sessions", b'{"a":1}'), ("get", "/api/v1/uploads/abc", None)]
)
def test_official_sdk_signs_exactly_as_the_server_verifies(method, path, body):
    headers = sdk_sign_request(SIGNING_SECRET, method, path, body, 1800000000)

    assert headers["X-Aptr-Timestamp"] == "1800000000"
    assert headers["X-Aptr-Signature"] == request_signature(SIGNING_SECRET, "1800000000", method, path, body or b"")


@pytest.fixture
def signature_clock(monkeypatch) -> None:
    """The clock the signature check reads, held still: a timestamp's distance from it is then exact."""
    monkeypatch.setattr(authentication, "time", SimpleNamespace(time=lambda: float(NOW)))


@pytest.fixture
def signing_owner(owner, signature_clock):
    owner.api_key.signing_secret = SIGNING_SECRET
    owner.api_key.save()
    return owner


def signed(method: str, path: str, body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int = NOW):
    """The signature headers, computed when the test runs (never at import, where a slow run would age them)."""
    headers = sdk_sign_request(secret, method, path, body, timestamp)
    return {"HTTP_X_APTR_TIMESTAMP": headers["X-Aptr-Timestamp"], "HTTP_X_APTR_SIGNATURE": headers["X-Aptr-Signature"]}


def post_create(api_client, persona, body: bytes, **headers):
    return api_client.generic("POST", CREATE, body, content_type="application/json", **persona.auth, **headers)


BODY = json.dumps({"long_polling": True}, separators=(",", ":")).encode()
MISMATCH = "The request signature does not match."
STALE = "Missing or stale X-Aptr-Timestamp for a signing key."


def assert_refused_signature(response, message: str) -> None:
    """401 INVALID_SIGNATURE for the reason given: a stale timestamp must not pass for a wrong signature."""
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert response.json()["message"] == message


def test_signing_key_accepts_a_correctly_signed_request(api_client, signing_owner):
    response = post_create(api_client, signing_owner, BODY, **signed("POST", CREATE, BODY))

    assert response.status_code == 201, response.content


def test_signing_key_accepts_a_signed_get_with_a_query_string(api_client, signing_owner):
    session_id = post_create(api_client, signing_owner, BODY, **signed("POST", CREATE, BODY)).json()["id"]
    path = f"/api/v1/upload-sessions/{session_id}/delivery-status?pollFrom=2020-01-01T00:00:00Z"

    response = api_client.get(path, **signing_owner.auth, **signed("GET", path, b""))

    assert response.status_code == 200, response.content


def test_signing_key_rejects_an_unsigned_request(api_client, signing_owner):
    assert_refused_signature(post_create(api_client, signing_owner, BODY), STALE)


@pytest.mark.parametrize(
    ("signed_over", "sent_signature"),
    [
        ({"secret": "another secret"}, None),
        ({"body": b'{"long_polling":false}'}, None),
        ({"method": "PUT"}, None),
        ({"path": "/api/v1/upload-sessions?x=1"}, None),
        ({}, "sha256=" + "0" * 64),
        ({}, ""),
        ({}, "sha256=\xe9\xe9"),
    ],
    ids=["wrong secret", "other body", "other method", "other path", "zeros", "empty", "non-ascii"],
)
def test_signing_key_rejects_a_wrongly_signed_request(api_client, signing_owner, signed_over, sent_signature):
    headers = signed(**{"method": "POST", "path": CREATE, "body": BODY, **signed_over})
    if sent_signature is not None:
        headers["HTTP_X_APTR_SIGNATURE"] = sent_signature

    assert_refused_signature(post_create(api_client, signing_owner, BODY, **headers), MISMATCH)


@pytest.mark.parametrize("offset", [-301, 301, -10_000])
def test_signing_key_rejects_a_timestamp_more_than_300_seconds_off(api_client, signing_owner, offset):
    headers = signed("POST", CREATE, BODY, timestamp=NOW + offset)

    assert_refused_signature(post_create(api_client, signing_owner, BODY, **headers), STALE)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_signing_key_accepts_a_timestamp_within_300_seconds(api_client, signing_owner, offset):
    headers = signed("POST", CREATE, BODY, timestamp=NOW + offset)

    response = post_create(api_client, signing_owner, BODY, **headers)

    assert response.status_code == 201, response.content


@pytest.mark.parametrize("timestamp", ["", "soon", "-5", "1.5e9", "\xb2", "\uff11\uff18\uff10\uff10"])
def test_signing_key_rejects_a_malformed_timestamp_with_401_not_500(api_client, signing_owner, timestamp):
    headers = {**signed("POST", CREATE, BODY), "HTTP_X_APTR_TIMESTAMP": timestamp}

    assert_refused_signature(post_create(api_client, signing_owner, BODY, **headers), STALE)


def test_declaring_multipart_does_not_switch_signing_off_on_a_json_endpoint(api_client, signing_owner):
    path = "/api/v1/upload-sessions/sess_01J00000000000000000000000/delivery-status"

    response = api_client.generic(
        "GET", path, b"", content_type="multipart/form-data; boundary=x", **signing_owner.auth
    )

    assert_refused_signature(response, STALE)


def test_declaring_multipart_does_not_let_a_bodiless_action_skip_the_signature(api_client, signing_owner):
    path = "/api/v1/upload-sessions/sess_01J00000000000000000000000/deliveries/x/retry"

    response = api_client.generic(
        "POST", path, b"", content_type="multipart/form-data; boundary=x", **signing_owner.auth
    )

    assert_refused_signature(response, STALE)


def test_uploads_into_a_session_of_a_signing_key_need_no_signature(api_client, signing_owner):
    session_id = post_create(api_client, signing_owner, BODY, **signed("POST", CREATE, BODY)).json()["id"]

    response = upload(api_client, session_id, image_bytes(), **signing_owner.auth)

    assert response.status_code == 201, response.content


def test_key_without_a_signing_secret_ignores_signature_headers(api_client, owner):
    response = post_create(api_client, owner, BODY, HTTP_X_APTR_SIGNATURE="sha256=junk", HTTP_X_APTR_TIMESTAMP="1")

    assert response.status_code == 201, response.content
