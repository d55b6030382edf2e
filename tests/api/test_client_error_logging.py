"""A request the client got wrong is answered with the error envelope (400 or 413, never a 500) and logged as one
WARNING line: never an ERROR, never a traceback, so monitoring that pages on errors stays quiet for scanners."""

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from sessions_app import selectors
from tests.sessions_app.helpers import create_session, multipart_part, upload_parts

BAD_REQUEST = {"message": "Bad request.", "code": "VALIDATION_ERROR", "statusCode": 400, "error": "Bad Request"}
TOO_LARGE = {
    "message": "The request body is too large.",
    "code": "FILE_TOO_LARGE",
    "statusCode": 413,
    "error": "Content Too Large",
}


def one_warning_line(caplog) -> str:
    """The only record of WARNING or above: a WARNING without traceback, on one line."""
    records = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.levelname for record in records] == ["WARNING"], [
        (record.name, record.levelname, record.getMessage()) for record in records
    ]
    (record,) = records
    assert record.exc_info is None and record.exc_text is None
    assert "\n" not in record.getMessage()
    return record.getMessage()


def too_many_fields(api_client, session_id: str):
    parts = [multipart_part(f'name="field{number}"', b"x", "text/plain") for number in range(1001)]
    return upload_parts(api_client, session_id, *parts)


def too_many_files(api_client, session_id: str):
    parts = [multipart_part(f'name="extra"; filename="{number}.jpg"', b"x") for number in range(101)]
    return upload_parts(api_client, session_id, *parts)


def oversized_field(api_client, session_id: str):
    # A text field is held in memory, so Django bounds it (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB).
    return upload_parts(api_client, session_id, multipart_part('name="source"', b"x" * 3_000_000, "text/plain"))


@pytest.mark.parametrize(
    ("send", "expected", "logged"),
    [
        (too_many_fields, BAD_REQUEST, "TooManyFieldsSent"),
        (too_many_files, BAD_REQUEST, "TooManyFilesSent"),
        (oversized_field, TOO_LARGE, "RequestDataTooBig"),
    ],
    ids=["too many fields", "too many files", "oversized text field"],
)
def test_suspicious_upload_bodies_are_one_warning_line(api_client, owner, caplog, send, expected, logged):
    session = create_session(api_client, owner)
    caplog.clear()

    response = send(api_client, session["id"])

    assert (response.status_code, response.json()) == (expected["statusCode"], expected)
    message = one_warning_line(caplog)
    assert logged in message
    assert f"/api/v1/upload/{session['id']}/images" in message


def test_a_json_body_over_the_memory_limit_is_413_and_one_warning_line(api_client, owner, caplog):
    response = api_client.post(
        "/api/v1/upload-sessions", {"long_polling": True, "label": "x" * 3_000_000}, format="json", **owner.auth
    )

    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert "RequestDataTooBig" in one_warning_line(caplog)


def test_a_host_not_allowed_is_400_and_one_warning_line(api_client, owner, caplog):
    session = create_session(api_client, owner)
    caplog.clear()

    response = api_client.get(f"/api/v1/upload/{session['id']}/session", HTTP_HOST="evil.example\nforged: line")

    assert (response.status_code, response.json()) == (400, BAD_REQUEST)
    message = one_warning_line(caplog)
    assert "DisallowedHost" in message and "evil.example" in message


def test_an_unparsable_multipart_body_outside_the_api_is_400_and_one_warning_line(api_client, db, caplog):
    # Django's own views (here the admin's login form, through the CSRF check) parse the body themselves.
    response = api_client.generic("POST", "/admin/login/", b"--x\r\n", content_type="multipart/form-data")

    assert (response.status_code, response.json()) == (400, BAD_REQUEST)
    message = one_warning_line(caplog)
    assert "MultiPartParserError" in message and "/admin/login/" in message


def test_an_unparsable_multipart_upload_is_400_and_one_warning_line(api_client, owner, caplog):
    session = create_session(api_client, owner)
    caplog.clear()

    response = api_client.generic(
        "POST", f"/api/v1/upload/{session['id']}/images", b"--x\r\n", content_type="multipart/form-data"
    )

    assert response.status_code == 400, response.content
    assert response.json() == {
        "message": "Malformed multipart body: Invalid boundary in multipart: None",
        "code": "VALIDATION_ERROR",
        "statusCode": 400,
        "error": "Bad Request",
    }
    assert f"/api/v1/upload/{session['id']}/images" in one_warning_line(caplog)


def test_server_errors_still_log_an_error_with_the_traceback(api_client, owner, caplog, monkeypatch):
    def fail(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(selectors, "session_public", fail)
    api_client.raise_request_exception = False

    response = api_client.post(
        "/api/v1/upload/sess_x/images", {"file": SimpleUploadedFile("a.jpg", b"x")}, format="multipart"
    )

    assert response.status_code == 500
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
