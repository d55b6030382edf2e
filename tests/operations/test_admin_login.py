"""Admin logins are throttled: five wrong passwords for one username from one address lock that pair out."""

import contextlib
import threading

import pytest
from django.contrib.auth import get_user_model

LOGIN = "/admin/login/"
PASSWORD = "the-right-password"
LOCKED_OUT = "Too many failed logins for this account from your address"


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser(username="boss", email="boss@example.test", password=PASSWORD)


def log_in(client, password: str, username: str = "boss", address: str = "203.0.113.5"):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address)


def fail(client, times: int, **kwargs) -> None:
    for _ in range(times):
        response = log_in(client, "wrong-password", **kwargs)
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.content.decode()


def test_the_right_password_logs_in(client, admin_user):
    response = log_in(client, PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_the_fifth_wrong_password_locks_the_username_out_from_that_address(client, admin_user, settings):
    settings.APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS = 15 * 60
    fail(client, 4)

    fifth = log_in(client, "wrong-password")
    assert fifth.status_code == 200
    assert LOCKED_OUT in fifth.content.decode() and "15 more minute(s)" in fifth.content.decode()

    # Even the right password is refused, and the client stays logged out.
    locked = log_in(client, PASSWORD)
    assert locked.status_code == 200
    assert LOCKED_OUT in locked.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_locked_out_pair_does_not_lock_other_addresses_or_other_usernames(client, admin_user):
    get_user_model().objects.create_superuser(username="other", email="other@example.test", password=PASSWORD)
    fail(client, 4)
    assert LOCKED_OUT in log_in(client, "wrong-password").content.decode()

    assert log_in(client, PASSWORD, address="203.0.113.6").status_code == 302
    client.logout()
    assert log_in(client, PASSWORD, username="other").status_code == 302


def test_a_username_typed_in_another_case_counts_as_the_same(client, admin_user):
    fail(client, 3)
    fail(client, 1, username="BOSS")
    assert LOCKED_OUT in log_in(client, "wrong-password", username="Boss").content.decode()


def test_a_successful_login_starts_the_count_again(client, admin_user):
    fail(client, 4)
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    fail(client, 4)
    assert log_in(client, PASSWORD).status_code == 302


def test_the_limit_and_the_lockout_come_from_settings(client, admin_user, settings):
    settings.APERTUR_ADMIN_LOGIN_MAX_FAILURES = 2
    settings.APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS = 120
    fail(client, 1)
    second = log_in(client, "wrong-password")
    assert LOCKED_OUT in second.content.decode() and "2 more minute(s)" in second.content.decode()


def test_guesses_sent_all_at_once_get_only_the_allowed_number_of_password_checks(admin_user, monkeypatch, settings):
    # Each check waits until every guess is being checked at once, as with a slow hasher; the allowed ones are the
    # only ones to get there, so the others cannot have been checked before the first was counted.
    from django.contrib.auth import forms as auth_forms
    from django.test import RequestFactory

    from apertur.admin import ThrottledAdminLoginForm

    guesses = 12
    checked = []
    everyone_checking = threading.Barrier(guesses)
    real_authenticate = auth_forms.authenticate

    def slow_authenticate(request, **credentials):
        checked.append(1)
        with contextlib.suppress(threading.BrokenBarrierError):
            everyone_checking.wait(1)
        return real_authenticate(request, **credentials)

    monkeypatch.setattr(auth_forms, "authenticate", slow_authenticate)

    def guess(number: int) -> None:
        request = RequestFactory().post(LOGIN, REMOTE_ADDR="203.0.113.5")
        ThrottledAdminLoginForm(request, data={"username": "boss", "password": f"guess-{number}"}).is_valid()

    threads = [threading.Thread(target=guess, args=(number,)) for number in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(checked) == settings.APERTUR_ADMIN_LOGIN_MAX_FAILURES
