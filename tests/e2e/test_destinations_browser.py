"""A project's destinations in a real browser (Chromium) against the real site: an owner adds a webhook through its
form, tests it and sees the outcome in place, then connects a Google Drive through the provider's consent (a local
Google server) and sees it in the list as connected."""

import pytest

from destinations.models import Destination
from tests.conftest import ServerProcess
from tests.e2e.conftest import make_owner, sign_in
from tests.servers.google_drive import CLIENT_ID, CLIENT_SECRET, google_server

__all__ = ["google_server"]


@pytest.fixture
def site(transactional_db, tmp_path, google_server):
    """The site with Google Drive's OAuth client and endpoints pointing at the local Google server, as an operator
    sets them (APERTUR_OAUTH_GOOGLE_DRIVE_*, docs/configuration.md)."""
    google_server.reset()
    prefix = "APERTUR_OAUTH_GOOGLE_DRIVE"
    server = ServerProcess(
        with_worker=True,
        log_path=tmp_path / "server.log",
        **{
            f"{prefix}_CLIENT_ID": CLIENT_ID,
            f"{prefix}_CLIENT_SECRET": CLIENT_SECRET,
            f"{prefix}_AUTHORIZE_URL": f"{google_server.url}/o/oauth2/v2/auth",
            f"{prefix}_TOKEN_URL": f"{google_server.url}/token",
            f"{prefix}_REVOKE_URL": f"{google_server.url}/revoke",
            f"{prefix}_API_BASE": f"{google_server.url}/",
        },
    )
    yield server
    server.stop()


def test_an_owner_adds_and_tests_a_webhook_and_connects_a_drive(site, page, webhook_receiver, google_server):
    make_owner()
    sign_in(page, site.url)
    page.get_by_role("link", name="Claims").click()
    page.get_by_role("link", name="Destinations").click()

    page.get_by_role("link", name="Add a destination").first.click()
    page.get_by_role("link", name="Webhook", exact=True).click()
    page.get_by_label("Name").fill("Claims hook")
    page.get_by_label("URL").fill(f"{webhook_receiver.url}/hook")
    page.get_by_label("Signing secret").fill("a-shared-secret-123")
    page.get_by_role("button", name="Create destination").click()
    page.get_by_text("Claims hook is saved.").wait_for()

    hook = Destination.objects.get(name="Claims hook")
    page.evaluate("window.stillHere = true")  # gone if the test button reloaded the page
    page.get_by_role("button", name="Test Claims hook").click()
    result = page.locator(f"#test-result-{hook.pk}")
    result.get_by_text("Test delivered").wait_for()

    assert page.evaluate("window.stillHere") is True
    assert len(webhook_receiver.wait_for_requests(1)) == 1
    assert "a-shared-secret-123" not in page.content()

    page.get_by_label("Name of the new Google Drive destination").fill("Team drive")
    page.get_by_role("button", name="Connect Google Drive").click()
    page.get_by_text("Team drive is connected.").wait_for()

    drive = Destination.objects.get(name="Team drive")
    row = page.locator(f"#destination-{drive.pk}")
    assert drive.type == "google_drive" and drive.secrets["token"]["access_token"]
    assert row.get_by_text("connected", exact=True).is_visible()
    assert row.get_by_text("active", exact=True).is_visible()
    assert row.get_by_role("button", name="Disconnect Team drive").is_visible()
    assert drive.secrets["token"]["access_token"] not in page.content()

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Delete Claims hook").click()
    page.get_by_text("Claims hook is deleted").wait_for()
    assert dialogs and dialogs[0].startswith("Delete Claims hook?")
    assert page.get_by_role("button", name="Test Claims hook").count() == 0
    assert Destination.objects.get(pk=hook.pk).deleted_at is not None
    assert not page.problems
