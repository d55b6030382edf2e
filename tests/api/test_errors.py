"""The error envelope (docs/api.md "Errors"): every error is JSON with message/code/statusCode/error, never HTML,
never a 500."""

import pytest

from apertur.api.errors import reason_phrase
from sessions_app.models import Image, UploadSession
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session, upload


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert body["statusCode"] == status
    assert body["error"] == reason_phrase(status)
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"message", "code", "statusCode", "error", "fields"}
    return body


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v1/upload-sessions/x/y/z/w"])
def test_unknown_url_is_a_404_json_envelope(api_client, owner, path):
    assert_envelope(api_client.get(path, **owner.auth), 404, "NOT_FOUND")


def test_unknown_url_without_a_key_is_a_404_json_envelope(api_client, db):
    assert_envelope(api_client.post("/api/v1/does-not-exist", {}, format="json"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/upload-sessions"), ("delete", "/api/v1/upload-sessions"), ("put", "/api/v1/upload-sessions")],
)
def test_wrong_method_on_a_key_endpoint_is_a_405_envelope(api_client, owner, method, path):
    response = getattr(api_client, method)(path, **owner.auth)

    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")


def test_wrong_method_on_an_upload_page_endpoint_is_a_405_envelope(api_client, owner):
    session = create_session(api_client, owner)

    assert_envelope(api_client.get(f"/api/v1/upload/{session['id']}/images"), 405, "METHOD_NOT_ALLOWED")
    assert_envelope(api_client.delete(f"/api/v1/upload/{session['id']}/session"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("body", [b'{"long_polling": tru', b"{'single': 'quotes'}", b"\xff\xfe", b"[1, 2"])
def test_malformed_json_body_is_a_400_validation_error(api_client, owner, body):
    response = api_client.generic(
        "POST", "/api/v1/upload-sessions", body, content_type="application/json", **owner.auth
    )

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert body["message"].startswith("Malformed request body")


@pytest.mark.parametrize("body", ["[]", '"a string"', "42", "null", "true"])
def test_json_body_that_is_not_an_object_is_a_400_validation_error(api_client, owner, body):
    response = api_client.generic(
        "POST", "/api/v1/upload-sessions", body, content_type="application/json", **owner.auth
    )

    assert_envelope(response, 400, "VALIDATION_ERROR")


def test_body_in_an_unsupported_content_type_is_a_415_envelope(api_client, owner):
    response = api_client.generic(
        "POST", "/api/v1/upload-sessions", "long_polling=true", content_type="text/plain", **owner.auth
    )

    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_upload_sent_as_plain_text_is_a_415_envelope(api_client, owner):
    session = create_session(api_client, owner)

    response = api_client.post(f"/api/v1/upload/{session['id']}/images", "aGVsbG8=", content_type="text/plain")

    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_upload_sent_as_json_that_is_no_encrypted_envelope_is_a_400(api_client, owner):
    # A JSON body is the variant of docs/api.md "Encrypted uploads"; anything else in JSON is a bad envelope.
    session = create_session(api_client, owner)

    response = api_client.post(f"/api/v1/upload/{session['id']}/images", {"file": "aGVsbG8="}, format="json")

    assert_envelope(response, 400, "INVALID_ENCRYPTED_PAYLOAD")


def test_validation_error_lists_every_bad_field(api_client, owner):
    response = api_client.post(
        "/api/v1/upload-sessions",
        {"long_polling": True, "max_images": 0, "password": "abc", "tags": [""]},
        format="json",
        **owner.auth,
    )

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert {"max_images", "password", "tags.0"} <= set(body["fields"])
    assert all(isinstance(messages, list) and messages for messages in body["fields"].values())


def test_garbled_multipart_upload_is_a_400_validation_error(api_client, owner):
    session = create_session(api_client, owner)

    response = api_client.generic(
        "POST",
        f"/api/v1/upload/{session['id']}/images",
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nabc',
        content_type="multipart/form-data",  # no boundary
    )

    assert_envelope(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"destination_ids": "not-a-list"}, ["destination_ids"]),
        ({"destination_ids": [None]}, ["destination_ids.0"]),
        ({"destination_ids": [{"id": 1}]}, ["destination_ids.0"]),
        ({"long_polling": "maybe"}, ["long_polling"]),
        ({"long_polling": True, "tags": {"a": 1}}, ["tags"]),
        ({"long_polling": True, "tags": [1, 2]}, ["tags.0", "tags.1"]),
        ({"long_polling": True, "expires_at": 1800000000}, ["expires_at"]),
        ({"long_polling": True, "expires_at": None}, ["expires_at"]),
        ({"long_polling": True, "expires_in_hours": None}, ["expires_in_hours"]),
        ({"long_polling": True, "max_images": None}, ["max_images"]),
        ({"long_polling": True, "max_images": [3]}, ["max_images"]),
        ({"long_polling": True, "allowed_mime_types": None}, ["allowed_mime_types"]),
        ({"long_polling": True, "allowed_mime_types": [["image/png"]]}, ["allowed_mime_types.0"]),
        ({"long_polling": True, "password": None}, ["password"]),
        ({"long_polling": True, "password": ["secret"]}, ["password"]),
        ({"long_polling": True, "label": None}, ["label"]),
        ({"long_polling": True, "label": "\x00"}, ["label"]),
        ({"long_polling": True, "tags": ["\x00"]}, ["tags.0"]),
        ({"long_polling": True, "password": "\x00\x00\x00\x00"}, ["password"]),
    ],
)
def test_odd_create_bodies_are_a_400_naming_the_fields_and_create_nothing(api_client, owner, body, fields):
    response = api_client.post("/api/v1/upload-sessions", body, format="json", **owner.auth)

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert list(body["fields"]) == fields
    assert not UploadSession.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        '{"long_polling": true, "max_images": 1e400}',
        '{"long_polling": true, "max_images": NaN}',
        '{"long_polling": true, "max_image_dimension": -Infinity}',
        '{"long_polling": true, "max_images": ' + "9" * 5000 + "}",
        '{"long_polling": true, "tags": ["\\ud800"]}',
        '{"long_polling": true, "label": "' + "x" * 100_000 + '"}',
        "[" * 10_000 + "]" * 10_000,
    ],
    ids=["huge float", "NaN", "-Infinity", "5000 digits", "lone surrogate", "100k label", "deep nesting"],
)
def test_odd_json_is_a_400_validation_error(api_client, owner, raw):
    response = api_client.generic("POST", "/api/v1/upload-sessions", raw, content_type="application/json", **owner.auth)

    assert_envelope(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "query",
    ["", "?pollFrom=", "?page=-1&pageSize=abc"],
    ids=["no query", "empty pollFrom", "parameters it does not take"],
)
def test_delivery_status_without_a_usable_poll_from_answers_the_snapshot_at_once(api_client, owner, query):
    session = create_session(api_client, owner)
    stored = UploadSession.objects.get(pk=session["id"])

    response = api_client.get(f"/api/v1/upload-sessions/{session['id']}/delivery-status{query}", **owner.auth)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "session_id": session["id"],
        "status": "pending",
        "images": [],
        "files": [],
        "lastChanged": stored.last_changed_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def test_delivery_status_with_a_malformed_poll_from_is_a_400_naming_it(api_client, owner):
    session = create_session(api_client, owner)

    response = api_client.get(
        f"/api/v1/upload-sessions/{session['id']}/delivery-status?pollFrom=not-a-date", **owner.auth
    )

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert list(body["fields"]) == ["pollFrom"]


@pytest.mark.parametrize("session_id", ["x", "sess_", "' OR 1=1 --", "sess_" + "A" * 300, "%00", "..%2F..%2Fetc"])
def test_odd_session_ids_are_404_not_500(api_client, owner, session_id):
    assert_envelope(api_client.get(f"/api/v1/upload/{session_id}/session"), 404, "NOT_FOUND")
    assert_envelope(
        api_client.patch(f"/api/v1/upload-sessions/{session_id}", {}, format="json", **owner.auth), 404, "NOT_FOUND"
    )


@pytest.mark.parametrize("delivery_id", ["x", "00000000-0000-0000-0000-000000000000", "1" * 100])
def test_odd_delivery_ids_are_404_not_500(api_client, owner, delivery_id):
    session = create_session(api_client, owner)

    response = api_client.post(f"/api/v1/upload-sessions/{session['id']}/deliveries/{delivery_id}/retry", **owner.auth)

    assert_envelope(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("content_length", ["nope", "-5", "1e9"])
def test_invalid_content_length_on_an_upload_is_a_400_validation_error(api_client, owner, content_length):
    session = create_session(api_client, owner)

    response = api_client.generic(
        "POST",
        f"/api/v1/upload/{session['id']}/images",
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=content_length,
    )

    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert not Image.objects.exists()


def test_reason_phrases_are_rfc_9110_names_whatever_the_python_version(api_client, owner):
    session = create_session(api_client, owner, max_images=1)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201

    full = upload(api_client, session["id"], image_bytes())

    assert (full.status_code, full.json()["error"]) == (422, "Unprocessable Content")
    assert reason_phrase(413) == "Content Too Large"
