"""PATCH /api/v1/upload-sessions/{id} (docs/api.md "Updating a session"): the same validation as create, and what
each change does."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions_app.models import UploadSession
from tests.factories import image_bytes
from tests.sessions_app.helpers import assert_validation_error, create_session, upload

PUBLIC_DOCUMENT_KEYS = {
    "id",
    "status",
    "expiresAt",
    "tags",
    "imagesPerSession",
    "effectiveMaxImages",
    "effectiveAllowedMimeTypes",
    "effectiveMaxImageDimension",
    "effectiveMaxImageSizeMb",
    "imagesCount",
    "password_protected",
    "serverPublicKey",
    "e2eEnabled",
    "e2ePublicKey",
    "e2eDowngraded",
}


def patch(api_client, persona, session_id: str, body: dict):
    return api_client.patch(f"/api/v1/upload-sessions/{session_id}", body, format="json", **persona.auth)


@pytest.fixture
def session(api_client, owner) -> dict:
    return create_session(api_client, owner)


def test_patch_returns_the_public_session_document(api_client, owner, session):
    response = patch(api_client, owner, session["id"], {"max_images": 12})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == PUBLIC_DOCUMENT_KEYS
    assert body["id"] == session["id"]
    assert body["effectiveMaxImages"] == body["imagesPerSession"] == 12
    assert body["e2eEnabled"] is False


def test_patch_of_an_unknown_session_is_404(api_client, owner):
    response = patch(api_client, owner, "sess_01J00000000000000000000000", {"max_images": 3})

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_images": 0}, "max_images"),
        ({"max_images": 101}, "max_images"),
        ({"allowed_mime_types": ["image/gif"]}, "allowed_mime_types"),
        ({"allowed_mime_types": []}, "allowed_mime_types"),
        ({"max_image_dimension": 0}, "max_image_dimension"),
        ({"max_image_dimension": 10**30}, "max_image_dimension"),
        ({"max_image_size_mb": 0}, "max_image_size_mb"),
        ({"max_image_size_mb": 101}, "max_image_size_mb"),
        ({"password": "abc"}, "password"),
        ({"password": "p" * 129}, "password"),
        ({"password": ""}, "password"),
        ({"expires_at": "yesterday"}, "expires_at"),
    ],
)
def test_invalid_change_is_refused_with_400_and_changes_nothing(api_client, owner, session, body, field):
    before = UploadSession.objects.get(pk=session["id"])

    response = patch(api_client, owner, session["id"], body)

    assert_validation_error(response, field)
    after = UploadSession.objects.get(pk=session["id"])
    assert (after.max_images, after.allowed_mime_types, after.password_hash) == (
        before.max_images,
        before.allowed_mime_types,
        before.password_hash,
    )


@pytest.mark.parametrize("delta", [timedelta(minutes=-1), timedelta(hours=168, minutes=1)], ids=["past", "too far"])
def test_expires_at_in_the_past_or_beyond_168_hours_is_refused_with_400(api_client, owner, session, delta):
    response = patch(api_client, owner, session["id"], {"expires_at": (timezone.now() + delta).isoformat()})

    assert_validation_error(response, "expires_at")


def test_expires_at_moves_the_expiry(api_client, owner, session):
    wanted = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)

    response = patch(api_client, owner, session["id"], {"expires_at": wanted.isoformat()})

    assert response.status_code == 200, response.content
    assert parse_datetime(response.json()["expiresAt"]) == wanted


def test_setting_a_password_protects_the_session(api_client, owner, session):
    response = patch(api_client, owner, session["id"], {"password": "open sesame"})

    assert response.json()["password_protected"] is True
    assert upload(api_client, session["id"], image_bytes()).json()["code"] == "PASSWORD_REQUIRED"


def test_password_null_removes_the_password(api_client, owner):
    session = create_session(api_client, owner, password="open sesame")

    response = patch(api_client, owner, session["id"], {"password": None})

    assert response.status_code == 200, response.content
    assert response.json()["password_protected"] is False
    assert UploadSession.objects.get(pk=session["id"]).password_hash == ""
    assert upload(api_client, session["id"], image_bytes()).status_code == 201


def test_omitting_the_password_keeps_it(api_client, owner):
    session = create_session(api_client, owner, password="open sesame")

    response = patch(api_client, owner, session["id"], {"max_images": 4})

    assert response.json()["password_protected"] is True


def test_max_image_size_mb_sets_the_effective_limit_and_null_restores_the_default(api_client, owner, session):
    assert patch(api_client, owner, session["id"], {"max_image_size_mb": 1}).json()["effectiveMaxImageSizeMb"] == 1

    response = patch(api_client, owner, session["id"], {"max_image_size_mb": None})

    assert response.json()["effectiveMaxImageSizeMb"] == 20


def test_max_image_dimension_null_removes_the_limit(api_client, owner):
    session = create_session(api_client, owner, max_image_dimension=10)

    response = patch(api_client, owner, session["id"], {"max_image_dimension": None})

    assert response.json()["effectiveMaxImageDimension"] is None
    assert upload(api_client, session["id"], image_bytes(size=(64, 48))).status_code == 201


def test_allowed_mime_types_change_applies_to_the_next_upload(api_client, owner, session):
    patch(api_client, owner, session["id"], {"allowed_mime_types": ["image/png"]})

    assert upload(api_client, session["id"], image_bytes("JPEG")).status_code == 415
    assert upload(api_client, session["id"], image_bytes("PNG"), name="a.png").status_code == 201


def test_session_closed_because_full_reopens_when_max_images_is_raised(api_client, owner):
    session = create_session(api_client, owner, max_images=1)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    assert upload(api_client, session["id"], image_bytes()).json()["code"] == "SESSION_FULL"

    response = patch(api_client, owner, session["id"], {"max_images": 2})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "uploading"
    second = upload(api_client, session["id"], image_bytes())
    assert second.status_code == 201, second.content
    assert second.json()["image_index"] == 1
    assert upload(api_client, session["id"], image_bytes()).json()["code"] == "SESSION_FULL"


def test_lowering_max_images_to_the_count_closes_the_session_as_full(api_client, owner):
    session = create_session(api_client, owner, max_images=5)
    upload(api_client, session["id"], image_bytes())
    upload(api_client, session["id"], image_bytes())

    response = patch(api_client, owner, session["id"], {"max_images": 2})

    assert response.json()["imagesCount"] == 2
    refused = upload(api_client, session["id"], image_bytes())
    assert (refused.status_code, refused.json()["code"]) == (422, "SESSION_FULL")


def test_raising_max_images_does_not_reopen_a_completed_session(api_client, owner):
    session = create_session(api_client, owner, max_images=2)
    assert api_client.post(f"/api/v1/upload/{session['id']}/complete").status_code == 200

    patch(api_client, owner, session["id"], {"max_images": 5})

    refused = upload(api_client, session["id"], image_bytes())
    assert (refused.status_code, refused.json()["code"]) == (409, "SESSION_CLOSED")
