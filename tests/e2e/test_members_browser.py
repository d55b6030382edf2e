"""A project's members in a real browser (Chromium) against the real site: an owner invites an address, the invitee
opens the mailed link, signs up, confirms the address, comes back to the invitation, accepts it and sees the
project; the owner sees them among the members, makes them an admin, and switches to the same page of another
project."""

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from projects.models import Membership
from projects.services import project_create
from tests.conftest import ServerProcess
from tests.e2e.conftest import PASSWORD, make_owner, sign_in
from tests.factories import wait_until

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


def mailed_link(mail_dir: Path, pattern: str) -> str:
    """The first link matching `pattern` in the mails the server wrote (the file backend), once one is there."""

    def link() -> str | None:
        for message in sorted(mail_dir.glob("*.log")):
            found = re.search(pattern, message.read_text())
            if found:
                return found[0]
        return None

    wait_until(lambda: link() is not None, timeout=10, interval=0.1)
    return link()


def test_an_owner_invites_a_newcomer_who_signs_up_accepts_and_is_made_an_admin(site, chromium, mail_dir, tmp_path):
    project, _ = make_owner()
    owner_context, invitee_context = chromium.new_context(**DESKTOP), chromium.new_context(**DESKTOP)
    owner_context.set_default_timeout(20_000)
    invitee_context.set_default_timeout(20_000)
    owner, invitee = owner_context.new_page(), invitee_context.new_page()
    owner.on("dialog", lambda dialog: dialog.accept())
    try:
        sign_in(owner, site.url)
        owner.get_by_role("link", name="Claims").click()
        owner.get_by_role("link", name="Members").click()
        owner.get_by_label("Email").fill("Newcomer@Example.test")
        owner.get_by_label("Role", exact=True).select_option("member")
        owner.get_by_role("button", name="Send invitation").click()
        owner.get_by_text("An invitation is on its way to Newcomer@Example.test").wait_for()

        link = mailed_link(mail_dir, r"https?://\S+/invitations/[A-Za-z0-9_-]+")
        invitee.goto(link)
        invitee.get_by_role("heading", name="Invitation to “Claims”").wait_for()
        invitee.get_by_role("link", name="Create an account").click()
        invitee.get_by_label("Email").fill("newcomer@example.test")
        invitee.get_by_label("Password:", exact=True).fill(PASSWORD)
        invitee.get_by_label("Password (again)").fill(PASSWORD)
        invitee.get_by_role("button", name="Sign Up").click()
        invitee.get_by_role("heading", name="Verify Your Email Address").wait_for()
        invitee.goto(mailed_link(mail_dir, r"https?://\S+/accounts/confirm-email/\S+/"))
        invitee.get_by_role("button", name="Confirm").click()
        invitee.get_by_role("button", name="Accept invitation to Claims").click()
        invitee.get_by_text("Welcome to “Claims”: you are member.").wait_for()
        assert invitee.url == f"{site.url}/projects/{project.pk}/destinations"

        owner.reload()
        owner.get_by_label("Role of newcomer@example.test", exact=True).select_option("admin")
        owner.get_by_role("button", name="Change the role of newcomer@example.test").click()
        owner.get_by_text("newcomer@example.test is now admin.").wait_for()
        assert Membership.objects.get(project=project, user__email="newcomer@example.test").role == "admin"
        another = project_create(name="Another", owner=get_user_model().objects.get(email="owner@example.test"))
        owner.reload()
        owner.get_by_label("Switch project").select_option(label="Another")
        owner.get_by_role("button", name="Open").click()
        owner.wait_for_url(f"{site.url}/projects/{another.pk}/members")

        invitee.get_by_role("link", name="Members").click()
        assert invitee.get_by_role("button", name="Send invitation").count() == 1  # an admin invites too
        server_log = (tmp_path / "server.log").read_text()
        assert "/invitations/[redacted]" in server_log and link.rsplit("/", 1)[1] not in server_log
    finally:
        owner_context.close()
        invitee_context.close()
