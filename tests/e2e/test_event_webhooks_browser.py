"""Event webhooks and the overview in a real browser (Chromium) against the real site: an owner lands on the
project's overview with its chart, makes an event webhook pointing to a local receiver, sees its secret once,
presses Test and sees it delivered, signed with that secret."""

import hashlib
import hmac

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from projects.services import bootstrap
from tests.conftest import ServerProcess

PASSWORD = "correct horse battery"


@pytest.fixture
def site(transactional_db, tmp_path):
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log")
    yield server
    server.stop()


def test_an_owner_makes_an_event_webhook_sees_its_secret_once_and_tests_it(site, chromium, webhook_receiver):
    bootstrap(email="owner@example.test", password=PASSWORD, project_name="Claims")
    # Hashed as the server hashes (the tests' own settings use a fast hasher the server does not know).
    hashed = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    get_user_model().objects.filter(email="owner@example.test").update(password=hashed)
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(f"{site.url}/accounts/login/")
        page.get_by_label("Email").fill("owner@example.test")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign In").click()
        page.get_by_role("link", name="Claims").click()

        page.get_by_role("heading", name="Overview").wait_for()
        chart = page.locator("svg#delivery-chart")
        chart_title = page.locator("#chart-title").text_content()
        chart_role = chart.get_attribute("role")
        labelled_by = chart.get_attribute("aria-labelledby")
        days = page.locator("svg#delivery-chart g.day").count()

        page.get_by_role("link", name="Event webhooks").click()
        page.get_by_label("URL").fill(f"{webhook_receiver.url}/events")
        page.get_by_label("project.session.created").check()
        page.get_by_label("project.upload.*").check()
        page.get_by_role("button", name="Create webhook").click()
        secret = page.locator("#new-secret").text_content()
        focused = page.evaluate("document.activeElement.id")
        page.get_by_role("button", name="Copy").click()
        page.get_by_role("button", name="Copied").wait_for()
        copied = page.evaluate("navigator.clipboard.readText()")
        page.reload()
        shown_again = page.locator("#new-secret").count()
        page.get_by_role("button", name=f"Test the webhook to {webhook_receiver.url}/events").click()
        result = page.get_by_role("status").filter(has_text="Test event")
        result.wait_for()
        said = result.text_content()
        received = webhook_receiver.wait_for_requests(1)[0]

        assert (chart_role, labelled_by, days) == ("img", "chart-title chart-description", 14)
        assert chart_title == "Deliveries per day for the last 14 days, by outcome"
        assert len(secret) == 64 and copied == secret and focused == "shown-once"
        assert shown_again == 0 and secret not in page.content()
        assert said.strip() == "Test event delivered: HTTP 200."
        timestamp = received.header("X-Apertur-Timestamp")
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
        assert received.header("X-Apertur-Signature") == f"sha256={expected}"
        assert received.header("X-Apertur-Event") == "project.webhook.test"
        assert problems == []
    finally:
        context.close()
