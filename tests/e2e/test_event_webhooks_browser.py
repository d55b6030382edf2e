"""Event webhooks and the overview in a real browser (Chromium) against the real site: an owner lands on the
project's overview with its chart, makes an event webhook pointing to a local receiver, sees its secret once,
presses Test and sees it delivered, signed with that secret."""

import hashlib
import hmac

from tests.e2e.conftest import make_owner, sign_in


def test_an_owner_makes_an_event_webhook_sees_its_secret_once_and_tests_it(site, page, webhook_receiver):
    make_owner()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    sign_in(page, site.url)
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
    assert page.problems == []
