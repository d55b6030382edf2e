"""The admin signs in through the accounts' sign-in (apertur/admin.py): guessing is cut off, two-factor applies,
and only staff get in."""

import contextlib
import threading

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client

LOGIN = "/accounts/login/"
PASSWORD = "the-right-password"
TOO_MANY = "Too many failed login attempts"


@pytest.fixture
def admin_user(db):
    user = get_user_model().objects.create_superuser(username="boss", email="boss@example.test", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def log_in(client, password: str, email: str = "boss@example.test", address: str = "203.0.113.5"):
    return client.post(f"{LOGIN}?next=/admin/", {"login": email, "password": password}, REMOTE_ADDR=address)


def fail(client, times: int, **kwargs) -> None:
    for _ in range(times):
        response = log_in(client, "wrong-password", **kwargs)
        assert response.status_code == 200
        assert "The email address and/or password you specified are not correct." in response.content.decode()


def test_the_admin_login_sends_an_anonymous_visitor_to_the_accounts_sign_in(client, db):
    response = client.get("/admin/login/?next=/admin/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_staff_sign_in_there_and_land_in_the_admin(client, admin_user):
    response = log_in(client, PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_signed_in_user_who_is_not_staff_is_refused(client, db):
    user = get_user_model().objects.create_user(username="someone", email="someone@example.test", password=PASSWORD)
    client.force_login(user)

    assert client.get("/admin/login/").status_code == 403
    assert client.get("/admin/").status_code == 302  # the admin itself sends them to its login, which refuses


def test_the_fifth_wrong_password_locks_the_account_even_against_the_right_one(client, admin_user):
    fail(client, 5)

    locked = log_in(client, PASSWORD)

    assert TOO_MANY in locked.content.decode()
    assert client.get("/admin/").status_code == 302


def test_an_email_typed_in_another_case_counts_as_the_same(client, admin_user):
    fail(client, 3)
    fail(client, 2, email="BOSS@example.test")

    assert TOO_MANY in log_in(client, PASSWORD, email="Boss@Example.test").content.decode()


def test_a_successful_login_does_not_count_as_a_failure(client, admin_user):
    fail(client, 4)
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    assert log_in(client, PASSWORD).status_code == 302


def test_the_limit_comes_from_settings(client, admin_user, settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed": "2/120s/key"}
    fail(client, 2)

    assert TOO_MANY in log_in(client, PASSWORD).content.decode()


def test_guesses_sent_all_at_once_get_only_the_allowed_number_of_password_checks(admin_user, monkeypatch, settings):
    # Each check waits until every guess is being checked at once, as with a slow hasher; the allowed ones are the
    # only ones to get there, so the others cannot have been checked before the first was counted.
    from allauth.account import adapter as account_adapter

    guesses = 12
    checked = []
    everyone_checking = threading.Barrier(guesses)
    real_authenticate = account_adapter.authenticate

    def slow_authenticate(request, **credentials):
        checked.append(1)
        with contextlib.suppress(threading.BrokenBarrierError):
            everyone_checking.wait(1)
        return real_authenticate(request, **credentials)

    monkeypatch.setattr(account_adapter, "authenticate", slow_authenticate)

    def guess(number: int) -> None:
        log_in(Client(), f"guess-{number}")

    threads = [threading.Thread(target=guess, args=(number,)) for number in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(checked) == settings.APERTUR_LOGIN_MAX_FAILURES
