"""`image_receive`, the one upload service: the API view and the phone page's plain form post both call it with
what they parsed from their request, and it runs every rule in order, reading the body only when allowed."""

from datetime import timedelta
from functools import partial

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.utils import timezone

from apertur.errors import AppError
from sessions_app.models import Image, UploadSession
from sessions_app.passwords import password_cookie_value
from sessions_app.receiving import image_receive
from sessions_app.uploads import UploadContent, UploadLimits, read_upload_body
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session

PASSWORD = "open sesame"


def form_post(session_id: str, data: bytes, **fields):
    """A browser's multipart form post, as a plain Django request (no DRF)."""
    return RequestFactory().post(
        f"/u/{session_id}", {"file": SimpleUploadedFile("IMG_0042.JPG", data, "image/jpeg"), **fields}
    )


def receive(session_id: str, read_body, **overrides) -> Image:
    arguments = {"encryption_scheme": None, "password": None, "password_cookie": None, "ip": "198.51.100.9"}
    return image_receive(session_id=session_id, read_body=read_body, **{**arguments, **overrides})


class BodyNotToBeRead:
    """A body reader that fails the test if called: the session's rules must refuse before any byte is read."""

    def __call__(self, limits: UploadLimits) -> UploadContent:
        raise AssertionError("the body was read")


def test_a_plain_form_post_is_accepted_through_the_service(api_client, owner):
    session = create_session(api_client, owner)
    data = image_bytes("PNG")
    request = form_post(session["id"], data, source="gallery")

    image = receive(session["id"], partial(read_upload_body, request))

    assert (image.index, image.filename, image.mime_type, image.source) == (0, "IMG_0042.JPG", "image/png", "gallery")
    assert image.size_bytes == len(data)
    assert UploadSession.objects.get(pk=session["id"]).images_count == 1


def test_the_page_cookie_value_authorises_like_the_header(api_client, owner):
    session = create_session(api_client, owner, password=PASSWORD)
    cookie = password_cookie_value(UploadSession.objects.get(pk=session["id"]))

    image = receive(
        session["id"], partial(read_upload_body, form_post(session["id"], image_bytes())), password_cookie=cookie
    )

    assert image.index == 0


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("unknown", 404, "NOT_FOUND"),
        ("expired", 410, "SESSION_EXPIRED"),
        ("completed", 409, "SESSION_CLOSED"),
        ("protected", 401, "PASSWORD_REQUIRED"),
        ("full", 422, "SESSION_FULL"),
    ],
)
def test_session_rules_refuse_before_the_body_is_read(api_client, owner, state, status, code):
    session = create_session(
        api_client, owner, max_images=1, **({"password": PASSWORD} if state == "protected" else {})
    )
    session_id = "sess_01J00000000000000000000000" if state == "unknown" else session["id"]
    if state == "expired":
        UploadSession.objects.filter(pk=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "completed":
        api_client.post(f"/api/v1/upload/{session_id}/complete")
    elif state == "full":
        receive(session_id, partial(read_upload_body, form_post(session_id, image_bytes())))

    with pytest.raises(AppError) as refusal:
        receive(session_id, BodyNotToBeRead())

    assert (refusal.value.status, refusal.value.code) == (status, code)


def test_the_reader_gets_the_sessions_limits(api_client, owner):
    session = create_session(api_client, owner)
    api_client.patch(f"/api/v1/upload-sessions/{session['id']}", {"max_image_size_mb": 3}, format="json", **owner.auth)
    seen = []

    def reader(limits: UploadLimits) -> UploadContent:
        seen.append(limits)
        return UploadContent()

    for scheme in (None, "default"):
        with pytest.raises(AppError):
            receive(session["id"], reader, encryption_scheme=scheme)

    plain, encrypted = seen
    assert plain == UploadLimits(image_bytes=3 * 1024 * 1024, body_bytes=3 * 1024 * 1024)
    assert encrypted.image_bytes == 3 * 1024 * 1024
    assert encrypted.body_bytes > 4 * 1024 * 1024  # base64 and the JSON envelope around it
