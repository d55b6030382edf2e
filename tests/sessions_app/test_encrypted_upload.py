"""Encrypted uploads (docs/api.md "Uploading images"): envelopes made by the official client's own `encrypt_image`."""

import base64
import hashlib
import io
import json
import os
from datetime import timedelta

import pytest
from apertur_sdk.crypto import encrypt_image
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from PIL import Image as PillowImage

from sessions_app.models import Image, UploadEncryptionKey
from tests.factories import image_bytes, noisy_jpeg
from tests.sessions_app.helpers import create_session

MEBIBYTE = 1024 * 1024
ENCRYPTED = {"HTTP_X_APTR_ENCRYPTED": "default"}


def server_key(api_client, persona) -> str:
    response = api_client.get("/api/v1/encryption/server-key", **persona.auth)
    assert response.status_code == 200, response.content
    return response.json()["publicKey"]


def upload_envelope(api_client, session_id: str, envelope: dict | bytes, name: str = "photo.jpg.enc", **extra):
    content = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return api_client.post(
        f"/api/v1/upload/{session_id}/images",
        {"file": SimpleUploadedFile(name, content, "application/octet-stream")},
        format="multipart",
        **{**ENCRYPTED, **extra},
    )


def assert_invalid_envelope(response) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "INVALID_ENCRYPTED_PAYLOAD"


def test_an_encrypted_multipart_upload_is_decrypted_validated_and_stored_as_the_original(api_client, owner):
    session = create_session(api_client, owner)
    original = noisy_jpeg((320, 240))

    response = upload_envelope(api_client, session["id"], encrypt_image(original, server_key(api_client, owner)))

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["filename"], body["mime_type"], body["size_bytes"]) == ("photo.jpg", "image/jpeg", len(original))
    assert body["sha256"] == hashlib.sha256(original).hexdigest()
    image = Image.objects.get(pk=body["id"])
    assert image.is_encrypted
    with default_storage.open(image.staged_name, "rb") as staged:
        assert staged.read() == original


def test_the_envelope_as_a_json_body_carries_filename_and_source(api_client, owner):
    session = create_session(api_client, owner)
    original = image_bytes("PNG")
    envelope = encrypt_image(original, server_key(api_client, owner))

    response = api_client.post(
        f"/api/v1/upload/{session['id']}/images",
        {**envelope, "filename": "scan.png", "mimeType": "image/png", "source": "gallery"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert (response.json()["filename"], response.json()["mime_type"]) == ("scan.png", "image/png")
    assert Image.objects.get(pk=response.json()["id"]).source == "gallery"


def incompressible_png(size_bytes: int) -> bytes:
    side = int((size_bytes / 3) ** 0.5)
    buffer = io.BytesIO()
    PillowImage.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_5_mb_image_in_a_json_body_envelope_is_accepted(api_client, owner):
    # Larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), within the session's 20 MB.
    session = create_session(api_client, owner)
    original = incompressible_png(5 * MEBIBYTE)
    assert len(original) > 5 * MEBIBYTE
    envelope = encrypt_image(original, server_key(api_client, owner))

    response = api_client.post(
        f"/api/v1/upload/{session['id']}/images", {**envelope, "filename": "scan.png"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert (response.json()["size_bytes"], response.json()["sha256"]) == (
        len(original),
        hashlib.sha256(original).hexdigest(),
    )


def test_a_json_body_declared_over_the_envelope_limit_is_413_before_it_is_read(api_client, owner):
    # The declared length is a lie the test payload cannot back: reading the body would fail the test client.
    session = create_session(api_client, owner)

    response = api_client.generic(
        "POST",
        f"/api/v1/upload/{session['id']}/images",
        b"{}",
        content_type="application/json",
        CONTENT_LENGTH=str(30 * MEBIBYTE),
    )

    assert response.status_code == 413, response.content
    assert response.json() == {
        "message": "The image is larger than 20 MB.",
        "code": "FILE_TOO_LARGE",
        "statusCode": 413,
        "error": "Content Too Large",
    }


def test_the_public_key_is_the_same_on_every_endpoint_and_the_session(api_client, owner):
    session = create_session(api_client, owner)
    key = server_key(api_client, owner)
    assert key.startswith("-----BEGIN PUBLIC KEY-----")
    assert api_client.get("/api/v1/encryption/key", **owner.auth).json() == {"publicKey": key}
    assert api_client.get(f"/api/v1/upload/{session['id']}/session").json()["serverPublicKey"] == key
    assert api_client.get("/api/v1/encryption/server-key").status_code == 401
    assert UploadEncryptionKey.objects.count() == 1


def _tampered(envelope: dict, field: str, change) -> dict:
    return {**envelope, field: base64.b64encode(change(base64.b64decode(envelope[field]))).decode()}


def _wrapped_for_a_foreign_key(original: bytes) -> dict:
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = foreign.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return encrypt_image(original, pem.decode())


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda envelope: b"not json at all", id="not-json"),
        pytest.param(lambda envelope: b"[1, 2]", id="not-an-object"),
        pytest.param(lambda envelope: {k: v for k, v in envelope.items() if k != "iv"}, id="missing-iv"),
        pytest.param(lambda envelope: {**envelope, "encryptedData": "%%%"}, id="data-not-base64"),
        pytest.param(lambda envelope: {**envelope, "algorithm": "RSA-PKCS1+AES-128-CBC"}, id="other-algorithm"),
        pytest.param(lambda envelope: _tampered(envelope, "iv", lambda iv: iv[:8]), id="short-iv"),
        pytest.param(
            lambda envelope: _tampered(envelope, "encryptedData", lambda data: bytes([data[0] ^ 1]) + data[1:]),
            id="tampered-ciphertext",
        ),
        pytest.param(lambda envelope: _tampered(envelope, "encryptedKey", lambda key: key[::-1]), id="bad-wrapped-key"),
        pytest.param(lambda envelope: _wrapped_for_a_foreign_key(image_bytes()), id="foreign-key"),
    ],
)
def test_a_malformed_or_forged_envelope_is_refused_and_consumes_no_slot(api_client, owner, spoil):
    session = create_session(api_client, owner)
    envelope = encrypt_image(image_bytes(), server_key(api_client, owner))

    assert_invalid_envelope(upload_envelope(api_client, session["id"], spoil(envelope)))
    assert api_client.get(f"/api/v1/upload/{session['id']}/session").json()["imagesCount"] == 0
    assert not Image.objects.exists()


def test_an_unknown_encryption_scheme_is_refused(api_client, owner):
    session = create_session(api_client, owner)
    envelope = encrypt_image(image_bytes(), server_key(api_client, owner))
    assert_invalid_envelope(upload_envelope(api_client, session["id"], envelope, HTTP_X_APTR_ENCRYPTED="pgp"))


def test_decrypted_bytes_go_through_every_image_rule(api_client, owner):
    jpeg_only = create_session(api_client, owner, allowed_mime_types=["image/jpeg"])
    key = server_key(api_client, owner)
    not_an_image = upload_envelope(api_client, jpeg_only["id"], encrypt_image(b"plain text, not pixels", key))
    png = upload_envelope(api_client, jpeg_only["id"], encrypt_image(image_bytes("PNG"), key), name="a.png.enc")
    assert (not_an_image.status_code, not_an_image.json()["code"]) == (400, "INVALID_IMAGE")
    assert (png.status_code, png.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")

    small = create_session(api_client, owner)
    api_client.patch(f"/api/v1/upload-sessions/{small['id']}", {"max_image_size_mb": 1}, format="json", **owner.auth)
    too_big = upload_envelope(api_client, small["id"], encrypt_image(noisy_jpeg((1800, 1400)), key))
    assert (too_big.status_code, too_big.json()["code"]) == (413, "FILE_TOO_LARGE")
    assert "larger than 1 MB" in too_big.json()["message"]  # the image's limit, not the envelope's


def test_after_rotation_old_envelopes_open_during_the_grace_period_only(api_client, owner, settings):
    session = create_session(api_client, owner)
    old_key = server_key(api_client, owner)
    made_before_rotation = encrypt_image(image_bytes(), old_key)

    call_command("apertur_rotate_encryption_key")

    assert server_key(api_client, owner) != old_key
    assert upload_envelope(api_client, session["id"], made_before_rotation).status_code == 201
    UploadEncryptionKey.objects.filter(is_current=False).update(
        retired_at=timezone.now() - timedelta(hours=settings.APERTUR_ENCRYPTION_KEY_GRACE_HOURS, minutes=1)
    )
    assert_invalid_envelope(upload_envelope(api_client, session["id"], encrypt_image(image_bytes(), old_key)))
    assert (
        upload_envelope(
            api_client, session["id"], encrypt_image(image_bytes(), server_key(api_client, owner))
        ).status_code
        == 201
    )
