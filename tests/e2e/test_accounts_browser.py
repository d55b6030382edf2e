"""The accounts journey in a real browser (Chromium) against the real site: sign up, confirm the address from the
mail the server wrote (the file backend), make a project, turn on TOTP two-factor, and sign in again with a code
(docs/configuration.md "Accounts")."""

import re
import time
from pathlib import Path

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from tests.conftest import ServerProcess
from tests.factories import wait_until

PASSWORD = "correct horse battery"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def mail_dir(tmp_path) -> Path:
    path = tmp_path / "mail"
    path.mkdir()
    return path


@pytest.fixture
def site(transactional_db, tmp_path, mail_dir):
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log", APERTUR_EMAIL_FILE_PATH=str(mail_dir))
    yield server
    server.stop()


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(**DESKTOP)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def mailed_link(mail_dir: Path, path_part: str) -> str:
    def link() -> str | None:
        for message in sorted(mail_dir.glob("*.log")):
            found = re.search(rf"(https?://\S+{re.escape(path_part)}\S+/)", message.read_text())
            if found:
                return found[1]
        return None

    wait_until(lambda: link() is not None, timeout=10, interval=0.1)
    return link()


def test_a_newcomer_signs_up_confirms_makes_a_project_and_signs_in_with_two_factor(site, browser_page, mail_dir):
    page = browser_page
    page.goto(site.url)
    page.get_by_role("link", name="create an account").click()
    page.get_by_label("Email").fill("newcomer@example.test")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.get_by_role("heading", name="Verify Your Email Address").wait_for()
    # Not before the address is confirmed.
    page.goto(f"{site.url}/accounts/login/")
    page.get_by_label("Email").fill("newcomer@example.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.get_by_role("heading", name="Verify Your Email Address").wait_for()
    assert page.get_by_text("You have no project yet").count() == 0

    page.goto(mailed_link(mail_dir, "/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("You have no project yet").wait_for()

    page.get_by_label("New project").fill("Claims photos")
    page.get_by_role("button", name="Create project").click()
    page.get_by_text("Project “Claims photos” is ready").wait_for()

    page.get_by_role("link", name="Two-factor").click()
    page.get_by_role("link", name="Activate").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    secret = page.locator("#authenticator_secret").input_value()
    page.get_by_label("Authenticator code").fill(format_hotp_value(hotp_value(secret, int(time.time()) // 30)))
    page.get_by_role("button", name="Activate").click()
    page.get_by_role("heading", name="Recovery Codes").wait_for()

    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{site.url}/accounts/login/")
    page.get_by_label("Email").fill("newcomer@example.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.locator("input[name=code]").fill("000000")
    page.get_by_role("button", name="Sign In").click()
    page.get_by_text("Incorrect code").wait_for()
    page.locator("input[name=code]").fill(format_hotp_value(hotp_value(secret, int(time.time()) // 30)))
    page.get_by_role("button", name="Sign In").click()

    page.get_by_role("link", name="Claims photos").wait_for()
    assert page.url == f"{site.url}/"
    assert oct(mail_dir.stat().st_mode & 0o777) == "0o700"
