"""Session passwords (docs/api.md "Session password"): verify, the lockout after 10 wrong attempts, the header and
the page cookie."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.test import APIClient

from apertur.errors import AppError
from sessions_app.models import UploadSession
from sessions_app.passwords import password_cookie_name, session_password_verify
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session, upload

PASSWORD = "open sesame"


@pytest.fixture
def session(api_client, owner) -> dict:
    return create_session(api_client, owner, password=PASSWORD)


def verify(client, session_id: str, password: str, **extra):
    return client.post(f"/api/v1/upload/{session_id}/verify-password", {"password": password}, format="json", **extra)


def guess_wrong(client, session_id: str, times: int, **extra) -> None:
    for _ in range(times):
        response = verify(client, session_id, "wrong guess", **extra)
        assert response.json() == {"valid": False}, response.content


def assert_locked(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "TOO_MANY_PASSWORD_ATTEMPTS"
    retry_after = response["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 15 * 60


def test_verify_password_answers_valid_true_for_the_right_password(api_client, session):
    response = verify(api_client, session["id"], PASSWORD)

    assert response.status_code == 200
    assert response.json() == {"valid": True}


def test_verify_password_answers_valid_false_for_a_wrong_password(api_client, session):
    response = verify(api_client, session["id"], "open sesame!")

    assert response.status_code == 200
    assert response.json() == {"valid": False}


def test_verify_password_of_an_unknown_session_is_404(api_client, db):
    response = verify(api_client, "sess_01J00000000000000000000000", PASSWORD)

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")


def test_verify_password_without_a_password_field_is_400(api_client, session):
    response = api_client.post(f"/api/v1/upload/{session['id']}/verify-password", {}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "VALIDATION_ERROR")
    assert list(response.json()["fields"]) == ["password"]


def test_tenth_wrong_attempt_is_still_answered_and_the_eleventh_is_429(api_client, session):
    guess_wrong(api_client, session["id"], 10)

    assert_locked(verify(api_client, session["id"], "wrong again"))


def test_after_ten_wrong_attempts_even_the_right_password_is_429(api_client, session):
    guess_wrong(api_client, session["id"], 10)

    assert_locked(verify(api_client, session["id"], PASSWORD))


def test_after_ten_wrong_attempts_uploads_are_429_too(api_client, session):
    guess_wrong(api_client, session["id"], 10)

    assert_locked(upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD=PASSWORD))
    assert_locked(upload(api_client, session["id"], image_bytes()))


def test_wrong_passwords_sent_with_uploads_count_towards_the_lockout(api_client, session):
    for _ in range(10):
        response = upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD="wrong guess")
        assert response.json()["code"] == "INVALID_PASSWORD"

    assert_locked(upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD=PASSWORD))


def test_lockout_is_per_client_ip(api_client, session):
    guess_wrong(api_client, session["id"], 10, REMOTE_ADDR="203.0.113.7")

    assert verify(api_client, session["id"], PASSWORD, REMOTE_ADDR="203.0.113.8").json() == {"valid": True}
    assert_locked(verify(api_client, session["id"], PASSWORD, REMOTE_ADDR="203.0.113.7"))


def test_lockout_is_per_session(api_client, owner, session):
    other = create_session(api_client, owner, password=PASSWORD)
    guess_wrong(api_client, session["id"], 10)

    assert verify(api_client, other["id"], PASSWORD).json() == {"valid": True}


def test_lockout_follows_the_setting(api_client, session, settings):
    settings.APERTUR_PASSWORD_MAX_ATTEMPTS = 3
    guess_wrong(api_client, session["id"], 3)

    assert_locked(verify(api_client, session["id"], PASSWORD))


def test_x_session_password_header_authorises_an_upload(api_client, session):
    response = upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD=PASSWORD)

    assert response.status_code == 201, response.content


def test_valid_verify_sets_a_cookie_that_lets_the_same_browser_upload_without_the_header(api_client, session):
    browser = APIClient()

    response = verify(browser, session["id"], PASSWORD)

    cookie = response.cookies[password_cookie_name(session["id"])]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert upload(browser, session["id"], image_bytes()).status_code == 201
    assert upload(APIClient(), session["id"], image_bytes()).json()["code"] == "PASSWORD_REQUIRED"


def test_wrong_verify_sets_no_cookie(api_client, session):
    response = verify(api_client, session["id"], "wrong guess")

    assert password_cookie_name(session["id"]) not in response.cookies


def test_the_page_cookie_also_lets_the_browser_complete_the_session(api_client, session):
    browser = APIClient()
    verify(browser, session["id"], PASSWORD)

    response = browser.post(f"/api/v1/upload/{session['id']}/complete")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == session["id"]


def test_completing_a_protected_session_needs_the_password(api_client, session):
    response = api_client.post(f"/api/v1/upload/{session['id']}/complete")

    assert (response.status_code, response.json()["code"]) == (401, "PASSWORD_REQUIRED")


def test_forged_cookie_is_not_accepted(api_client, session):
    browser = APIClient()
    browser.cookies[password_cookie_name(session["id"])] = "anything:forged:signature"

    assert upload(browser, session["id"], image_bytes()).json()["code"] == "PASSWORD_REQUIRED"


def test_cookie_of_one_session_does_not_open_another(api_client, owner, session):
    other = create_session(api_client, owner, password=PASSWORD)
    browser = APIClient()
    cookie = verify(browser, session["id"], PASSWORD).cookies[password_cookie_name(session["id"])]
    browser.cookies[password_cookie_name(other["id"])] = cookie.value

    assert upload(browser, other["id"], image_bytes()).json()["code"] == "PASSWORD_REQUIRED"


def test_cookie_stops_working_when_the_password_changes(api_client, owner, session):
    browser = APIClient()
    verify(browser, session["id"], PASSWORD)

    api_client.patch(
        f"/api/v1/upload-sessions/{session['id']}", {"password": "a new secret"}, format="json", **owner.auth
    )

    assert upload(browser, session["id"], image_bytes()).json()["code"] == "PASSWORD_REQUIRED"


def test_old_password_stops_working_when_the_password_changes(api_client, owner, session):
    assert upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD=PASSWORD).status_code == 201

    api_client.patch(
        f"/api/v1/upload-sessions/{session['id']}", {"password": "a new secret"}, format="json", **owner.auth
    )

    refused = upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD=PASSWORD)
    assert refused.json()["code"] == "INVALID_PASSWORD"
    assert verify(api_client, session["id"], PASSWORD).json() == {"valid": False}


def test_unprotected_session_needs_no_password(api_client, owner):
    session = create_session(api_client, owner)

    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    assert verify(api_client, session["id"], "anything").json() == {"valid": True}


def test_public_session_document_is_readable_without_the_password(api_client, session):
    response = api_client.get(f"/api/v1/upload/{session['id']}/session")

    assert response.status_code == 200
    assert response.json()["password_protected"] is True


def test_parallel_wrong_guesses_cannot_slip_past_the_lockout(api_client, owner):
    session = UploadSession.objects.get(pk=create_session(api_client, owner, password="right-password")["id"])
    start = threading.Barrier(30)

    def guess(number: int) -> str:
        start.wait()
        try:
            return str(session_password_verify(session=session, password=f"wrong-{number}", ip="198.51.100.7"))
        except AppError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=30) as pool:
        outcomes = list(pool.map(guess, range(30)))

    assert outcomes.count("False") == 10
    assert outcomes.count("TOO_MANY_PASSWORD_ATTEMPTS") == 20


def test_a_phone_holding_the_cookie_keeps_uploading_when_a_stranger_at_its_address_is_locked_out(
    api_client, session, owner
):
    phone, stranger = APIClient(), APIClient()  # two devices behind one venue Wi-Fi address
    assert verify(phone, session["id"], PASSWORD).json() == {"valid": True}  # the phone now holds the cookie

    guess_wrong(stranger, session["id"], 10)
    assert_locked(upload(stranger, session["id"], image_bytes()))

    assert upload(phone, session["id"], image_bytes()).status_code == 201
    assert api_client.post(f"/api/v1/upload/{session['id']}/complete").status_code == 429  # no cookie: locked
