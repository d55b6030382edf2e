"""Dashboard accounts through django-allauth (docs/configuration.md "Accounts"): sign-up with a confirmed
address, sign-in by email, rate-limited guesses, password reset, TOTP two-factor with its secret encrypted at rest,
closed sign-ups, and the first project."""

import re
import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.test import Client

from projects.models import Membership, Project
from projects.services import bootstrap

PASSWORD = "correct horse battery"


def confirmation_link(message) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/[^\s]+/)", message.body)
    assert match, message.body
    return match[1]


def sign_up(client: Client, email: str = "new.user@example.test") -> None:
    response = client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:2000]


def activate_totp(client: Client) -> str:
    """What a signed-in user does: open the TOTP page, confirm their password (allauth asks again before a
    security change), scan the secret and type the current code. Returns the secret."""
    asked = client.get("/accounts/2fa/totp/activate/")
    assert asked.status_code == 302 and asked["Location"].startswith("/accounts/reauthenticate/")
    assert client.post(asked["Location"], {"password": PASSWORD}).status_code == 302
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    activated = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert activated.status_code == 302, activated.content.decode()[:3000]
    return secret


def totp_code(secret: str, offset: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


@pytest.fixture
def member(db):
    _, _ = bootstrap(email="member@example.test", password=PASSWORD, project_name="Claims")
    return get_user_model().objects.get(email="member@example.test")


def test_a_new_account_signs_in_only_after_confirming_its_address_by_the_mailed_link(client, db):
    sign_up(client)

    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.user@example.test"]
    assert "_auth_user_id" not in client.session
    refused = client.post("/accounts/login/", {"login": "new.user@example.test", "password": PASSWORD})
    assert refused.status_code == 302 and refused["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session

    link = confirmation_link(mail.outbox[0])
    assert client.get(link).status_code == 200
    confirmed = client.post(link)

    assert confirmed.status_code == 302
    assert client.get("/").content.decode().count("You have no project yet") == 1


def test_a_signed_in_user_creates_a_project_and_owns_it(client, member):
    client.force_login(member)

    response = client.post("/projects/new", {"name": "  Site   visits "})

    project = Project.objects.get(name="Site visits")
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/destinations"
    assert Membership.objects.get(project=project).user == member
    assert Membership.objects.get(project=project).role == Membership.Role.OWNER
    assert client.get(response["Location"]).status_code == 200
    assert "Site visits" in client.get("/").content.decode()


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_project_needs_a_name(client, member, name):
    client.force_login(member)

    response = client.post("/projects/new", {"name": name}, follow=True)

    assert "needs a name" in response.content.decode()
    assert Project.objects.count() == 1  # the bootstrap's only


def test_making_a_project_needs_a_signed_in_post(client, member):
    assert client.post("/projects/new", {"name": "x"})["Location"] == "/accounts/login/"
    client.force_login(member)
    assert client.get("/projects/new").status_code == 405
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(member)
    assert csrf_client.post("/projects/new", {"name": "x"}).status_code == 403
    assert Project.objects.count() == 1


def test_an_operator_made_account_signs_in_by_email_at_once(client, member):
    response = client.post("/accounts/login/", {"login": "MEMBER@example.test", "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == "/"
    assert "Claims" in client.get("/").content.decode()


def test_guessing_passwords_is_cut_off_even_for_the_right_one(client, member):
    for _ in range(5):
        wrong = client.post("/accounts/login/", {"login": "member@example.test", "password": "wrong password"})
        assert wrong.status_code == 200

    right = client.post("/accounts/login/", {"login": "member@example.test", "password": PASSWORD})

    assert right.status_code in (200, 429)
    assert "_auth_user_id" not in client.session
    assert "Too many failed login attempts" in right.content.decode()


def test_a_forgotten_password_is_reset_through_the_mailed_link(client, member):
    client.post("/accounts/password/reset/", {"email": "member@example.test"})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)", mail.outbox[0].body)[1]

    form = client.get(link, follow=True)
    new_password = "a different long secret"
    done = client.post(form.redirect_chain[-1][0], {"password1": new_password, "password2": new_password})

    assert done.status_code == 302
    assert get_user_model().objects.get(pk=member.pk).check_password(new_password)


def test_totp_two_factor_is_asked_at_sign_in_and_its_secret_is_encrypted_at_rest(client, member):
    client.post("/accounts/login/", {"login": "member@example.test", "password": PASSWORD})

    secret = activate_totp(client)

    stored = Authenticator.objects.get(user=member, type=Authenticator.Type.TOTP).data["secret"]
    assert stored != secret and secret not in stored
    client.post("/accounts/logout/")

    step = client.post("/accounts/login/", {"login": "member@example.test", "password": PASSWORD})
    assert step["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session
    assert client.post("/accounts/2fa/authenticate/", {"code": "000000"}).status_code == 200
    assert "_auth_user_id" not in client.session
    signed_in = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert signed_in.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)


def test_rotating_the_server_keys_re_encrypts_the_totp_secret(client, member, settings):
    from cryptography.fernet import Fernet

    from apertur.crypto import _fernet

    client.post("/accounts/login/", {"login": "member@example.test", "password": PASSWORD})
    secret = activate_totp(client)
    before = Authenticator.objects.get(user=member, type=Authenticator.Type.TOTP).data["secret"]

    new_key = Fernet.generate_key().decode()
    settings.APERTUR_SECRET_KEYS = [new_key, *settings.APERTUR_SECRET_KEYS]
    _fernet.cache_clear()
    try:
        call_command("apertur_rotate_secrets", stdout=open("/dev/null", "w"))  # noqa: SIM115
        after = Authenticator.objects.get(user=member, type=Authenticator.Type.TOTP).data["secret"]
        assert after != before
        assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == secret
    finally:
        settings.APERTUR_SECRET_KEYS = settings.APERTUR_SECRET_KEYS[1:]
        _fernet.cache_clear()


def test_sign_ups_can_be_closed(client, db, settings):
    settings.ACCOUNT_ALLOW_SIGNUPS = False

    page = client.get("/accounts/signup/")
    client.post("/accounts/signup/", {"email": "x@example.test", "password1": PASSWORD, "password2": PASSWORD})

    assert "closed" in page.content.decode().lower()
    assert not get_user_model().objects.filter(email="x@example.test").exists()
    assert 'href="/accounts/signup/"' not in client.get("/").content.decode()


def test_the_oauth_connect_pages_send_an_anonymous_visitor_to_the_accounts_sign_in(client, db):
    response = client.get("/destinations/oauth/google_drive/start")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


# --- found by the review of the accounts -----------------------------------------------------------------------


def test_the_per_account_count_cannot_be_dodged_by_varying_the_host_header(client, member, settings):
    settings.ALLOWED_HOSTS = ["apertur.example.com", "testserver"]
    hosts = ["apertur.example.com", "APERTUR.example.com", "apertur.example.com.", "apertur.example.com:443"]
    for number in range(5):
        client.post(
            "/accounts/login/",
            {"login": "member@example.test", "password": "wrong password"},
            HTTP_HOST=hosts[number % len(hosts)],
        )

    right = client.post("/accounts/login/", {"login": "member@example.test", "password": PASSWORD}, HTTP_HOST=hosts[0])

    assert "Too many failed login attempts" in right.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_stranger_failing_on_purpose_elsewhere_does_not_lock_the_owner_out(client, member):
    for _ in range(6):
        Client().post(
            "/accounts/login/", {"login": "member@example.test", "password": "wrong"}, REMOTE_ADDR="198.51.100.9"
        )

    mine = client.post("/accounts/login/", {"login": "member@example.test", "password": PASSWORD})

    assert mine.status_code == 302 and client.session["_auth_user_id"] == str(member.pk)


def test_bootstrap_does_not_hand_a_strangers_unconfirmed_sign_up_a_project(client, db):
    from apertur.errors import AppError

    sign_up(client, "boss@corp.test")

    with pytest.raises(AppError) as refused:
        bootstrap(email="boss@corp.test", password="operator's own password", project_name="Corp")

    assert refused.value.code == "UNCONFIRMED_ACCOUNT"
    assert not Project.objects.filter(name="Corp").exists()
    stranger = Client().post("/accounts/login/", {"login": "boss@corp.test", "password": PASSWORD})
    assert stranger["Location"] == "/accounts/confirm-email/"


def test_an_operator_made_staff_account_without_an_address_record_signs_in_at_once(client, db):
    get_user_model().objects.create_superuser(username="root", email="root@example.test", password=PASSWORD)

    response = client.post("/accounts/login/?next=/admin/", {"login": "root@example.test", "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert not mail.outbox


def test_accounts_made_before_the_sign_in_existed_count_as_confirmed(transactional_db):
    """The data migration projects/0002: run it again over users without an address record."""
    import importlib

    from allauth.account.models import EmailAddress
    from django.apps import apps

    migration = importlib.import_module("projects.migrations.0002_accounts_addresses_of_existing_users")
    old = get_user_model().objects.create_user(username="old", email="Old@Example.test", password=PASSWORD)
    twin = get_user_model().objects.create_user(username="twin", email="old@example.test", password=PASSWORD)
    blank = get_user_model().objects.create_user(username="blank", email="", password=PASSWORD)

    migration.confirm_existing_addresses(apps, None)

    assert EmailAddress.objects.get(user=old).verified
    assert not EmailAddress.objects.filter(user__in=[twin, blank]).exists()
    signed_in = Client().post("/accounts/login/", {"login": "old@example.test", "password": PASSWORD})
    assert signed_in.status_code == 302


@pytest.mark.parametrize("name", ["a\x00b", "\x00"])
def test_a_project_name_with_a_nul_character_is_refused_not_a_500(client, member, name):
    client.force_login(member)

    response = client.post("/projects/new", {"name": name}, follow=True)

    assert response.status_code == 200
    assert "needs a name" in response.content.decode()
    assert Project.objects.count() == 1


def test_an_anonymous_post_to_make_a_project_signs_in_and_lands_on_the_front_page(client, db):
    response = client.post("/projects/new", {"name": "x"})

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


def test_the_keys_of_mailed_links_are_not_in_the_access_log(client, member):
    import logging

    from apertur.request_logging import RedactTokens

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/accounts/password/reset/key/1-ditidj-b6cab1f/?x=1", "1.1", 302),
        None,
    )
    RedactTokens().filter(record)
    confirm = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "GET /accounts/confirm-email/MTpsZWFr:abc/ 200", None, None
    )
    RedactTokens().filter(confirm)

    assert (
        record.getMessage().count("ditidj") == 0 and "/accounts/password/reset/key/[redacted]/" in record.getMessage()
    )
    assert "MTpsZWFr" not in confirm.getMessage()


def test_reset_mail_is_sent_only_to_accounts_that_exist(client, db):
    client.post("/accounts/password/reset/", {"email": "nobody@example.test"})

    assert mail.outbox == []
