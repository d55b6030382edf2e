"""A project's event webhooks in the dashboard (delivery/pages.py): who sees and changes what, the secret shown
once, the API's checks and messages, Test against real local receivers, the deliveries with their request and
response, Retry, and a fixed number of queries."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from delivery.event_webhooks import event_webhook_create
from delivery.models import EventDelivery, EventLog, EventWebhook
from projects.models import Membership
from tests.factories import make_persona, signed_in

HOOK_URL = "https://hooks.example.test/apertur"


@pytest.fixture
def webhook(owner) -> EventWebhook:
    made, _ = event_webhook_create(project=owner.project, url=HOOK_URL, topics=["*"])
    return made


def pages_url(owner, *rest: str) -> str:
    return "/".join([f"/projects/{owner.project.pk}/webhooks", *rest])


def seed_delivery(webhook: EventWebhook, *, status: str = "failed", when=None, **fields) -> EventDelivery:
    when = when or timezone.now()
    event = EventLog.objects.create(
        project=webhook.project,
        topic="project.session.created",
        data={"session_id": "sess_X", "status": "pending", "label": "claim 4711", "tags": []},
        created_at=when,
    )
    fields.setdefault("attempts", 6)
    fields.setdefault("response_code", 503)
    fields.setdefault("response_body", "busy, try later")
    fields.setdefault("last_error", "HTTP 503 from the webhook")
    return EventDelivery.objects.create(webhook=webhook, event=event, status=status, created_at=when, **fields)


# --- who may do what ------------------------------------------------------------------------------

READS = ("", "{wid}/deliveries")
MANAGING_POSTS = ("{wid}/active", "{wid}/test", "{wid}/delete", "{wid}/deliveries/{did}/retry", "{wid}/edit")


@pytest.mark.parametrize(("who", "status"), [("owner", 200), ("admin", 200), ("member", 200), ("outsider", 404)])
@pytest.mark.parametrize("page", READS)
def test_every_member_reads_the_webhooks_and_their_deliveries_and_an_outsider_gets_404(
    owner, roles, webhook, who, status, page
):
    seed_delivery(webhook)

    response = signed_in(roles[who]).get(pages_url(owner, page.format(wid=webhook.pk)).rstrip("/"))

    assert response.status_code == status
    if status == 200:
        assert HOOK_URL in response.content.decode()


@pytest.mark.parametrize(("who", "status"), [("member", 403), ("outsider", 404)])
@pytest.mark.parametrize("action", MANAGING_POSTS)
def test_a_member_or_an_outsider_cannot_change_test_delete_or_retry(owner, roles, webhook, who, status, action):
    delivery = seed_delivery(webhook)
    url = pages_url(owner, action.format(wid=webhook.pk, did=delivery.pk))
    body = {"isActive": "false", "url": "https://elsewhere.example.test/", "topics": ["*"]}

    response = signed_in(roles[who]).post(url, body)

    assert response.status_code == status
    webhook.refresh_from_db()
    delivery.refresh_from_db()
    assert (webhook.is_active, webhook.url, delivery.status) == (True, HOOK_URL, "failed")


@pytest.mark.parametrize(("who", "status"), [("member", 403), ("outsider", 404)])
def test_a_member_or_an_outsider_cannot_create_a_webhook(owner, roles, who, status):
    response = signed_in(roles[who]).post(pages_url(owner), {"url": HOOK_URL, "topics": ["*"]})

    assert response.status_code == status
    assert not EventWebhook.objects.filter(project=owner.project).exists()


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owners_and_admins_see_the_forms_and_buttons_and_members_do_not(owner, roles, webhook, who):
    listed = signed_in(roles[who]).get(pages_url(owner)).content.decode()
    member = signed_in(roles["member"]).get(pages_url(owner)).content.decode()

    assert ("Create webhook" in listed, "Create webhook" in member) == (True, False)
    assert ("Test the webhook" in listed, "Test the webhook" in member) == (True, False)
    assert signed_in(roles[who]).get(pages_url(owner, str(webhook.pk), "edit")).status_code == 200
    assert signed_in(roles["member"]).get(pages_url(owner, str(webhook.pk), "edit")).status_code == 403


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owners_and_admins_create_switch_and_delete(owner, roles, who):
    client = signed_in(roles[who])

    made = client.post(pages_url(owner), {"url": HOOK_URL, "topics": ["project.upload.*"]})
    webhook = EventWebhook.objects.get(project=owner.project)
    off = client.post(pages_url(owner, str(webhook.pk), "active"), {"isActive": "false"})
    webhook.refresh_from_db()
    was_active = webhook.is_active
    gone = client.post(pages_url(owner, str(webhook.pk), "delete"))

    assert (made.status_code, off.status_code, gone.status_code) == (302, 302, 302)
    assert was_active is False
    assert not EventWebhook.objects.filter(pk=webhook.pk).exists()


def test_an_anonymous_visitor_is_sent_to_sign_in(owner, webhook):
    delivery = seed_delivery(webhook)
    anonymous = Client()

    for url in (pages_url(owner), pages_url(owner, str(webhook.pk), "deliveries")):
        answer = anonymous.get(url)
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/?next=")
    for action in ("", *MANAGING_POSTS):
        answer = anonymous.post(pages_url(owner, action.format(wid=webhook.pk, did=delivery.pk)).rstrip("/"))
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/?next=")
    assert EventWebhook.objects.filter(pk=webhook.pk, is_active=True).exists()


@pytest.mark.parametrize("bad", ["not-a-uuid", str(uuid.uuid4()), "%00"])
def test_a_malformed_or_unknown_webhook_or_delivery_id_is_404(owner, webhook, bad):
    client = signed_in(owner.user)

    assert client.get(pages_url(owner, bad, "deliveries")).status_code == 404
    assert client.get(pages_url(owner, bad, "edit")).status_code == 404
    assert client.post(pages_url(owner, bad, "test")).status_code == 404
    assert client.post(pages_url(owner, str(webhook.pk), "deliveries", bad, "retry")).status_code == 404
    assert client.get(f"/projects/{bad}/webhooks").status_code == 404


def test_another_projects_webhook_is_404_even_for_an_owner(owner, roles):
    other = make_persona("hooks-other")
    theirs, _ = event_webhook_create(project=other.project, url=HOOK_URL, topics=["*"])

    assert signed_in(owner.user).get(pages_url(owner, str(theirs.pk), "deliveries")).status_code == 404
    assert signed_in(owner.user).post(pages_url(owner, str(theirs.pk), "delete")).status_code == 404
    assert EventWebhook.objects.filter(pk=theirs.pk).exists()


def test_writes_need_the_csrf_token(owner, webhook):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)

    assert client.post(pages_url(owner), {"url": HOOK_URL, "topics": ["*"]}).status_code == 403
    for action in ("active", "test", "delete", "edit"):
        assert client.post(pages_url(owner, str(webhook.pk), action)).status_code == 403
    assert EventWebhook.objects.filter(project=owner.project).count() == 1


# --- create, the secret, the API's checks ----------------------------------------------------------


def test_a_new_webhook_takes_every_setting_and_its_secret_is_shown_once_then_never(owner):
    client = signed_in(owner.user)

    made = client.post(
        pages_url(owner),
        {
            "url": HOOK_URL,
            "topics": ["project.upload.*", "project.session.created"],
            "signatureMethod": "svix",
            "maxRetries": "3",
            "retryIntervals": "10, 60",
            "disableAfterFailures": "7",
            "customHeaders": "X-Tenant: acme\n\nX-Other:  two words ",
        },
    )
    shown = client.get(made["Location"])

    webhook = EventWebhook.objects.get(project=owner.project)
    page = shown.content.decode()
    secret = page.split('<code id="new-secret">')[1].split("</code>")[0]
    assert secret == webhook.secret and re.fullmatch(r"[0-9a-f]{64}", secret)
    assert webhook.topics == ["project.upload.*", "project.session.created"]
    assert (webhook.signature_method, webhook.max_retries, webhook.retry_intervals) == ("svix", 3, [10, 60])
    assert webhook.disable_after_failures == 7
    assert webhook.custom_headers == {"X-Tenant": "acme", "X-Other": "two words"}
    assert "no-store" in shown["Cache-Control"]
    seed_delivery(webhook)
    later = [
        client.get(made["Location"]),
        client.get(pages_url(owner)),
        client.get(pages_url(owner, str(webhook.pk), "deliveries")),
        client.get(pages_url(owner, str(webhook.pk), "edit")),
        client.get(f"/projects/{owner.project.pk}"),
    ]
    assert all(answer.status_code == 200 and secret not in answer.content.decode() for answer in later)
    stored = "".join(str(session.get_decoded()) for session in Session.objects.all())
    assert secret not in stored  # encrypted while it waited


def test_a_webhook_with_only_url_and_topics_gets_the_apis_defaults(owner):
    signed_in(owner.user).post(pages_url(owner), {"url": HOOK_URL, "topics": ["*"]})

    webhook = EventWebhook.objects.get(project=owner.project)
    assert (webhook.signature_method, webhook.max_retries, webhook.retry_intervals) == (
        "hmac_sha256",
        5,
        [5, 30, 120, 600, 3600],
    )
    assert (webhook.disable_after_failures, webhook.custom_headers) == (20, {})


def test_a_secret_waiting_for_another_project_is_not_shown_there(owner):
    other = make_persona("hooks-second")
    Membership.objects.create(user=owner.user, project=other.project, role="owner")
    client = signed_in(owner.user)

    made = client.post(pages_url(owner), {"url": HOOK_URL, "topics": ["*"]})
    elsewhere = client.get(f"/projects/{other.project.pk}/webhooks?" + made["Location"].split("?")[1])

    assert "new-secret" not in elsewhere.content.decode()


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"url": "ftp://example.test/x"}, "url: must be an http or https URL with a host"),
        ({"url": "not a url"}, "url: must be an http or https URL with a host"),
        ({"url": "https://example.test/" + "a" * 3000}, "url: Ensure this field has no more than 2000 characters."),
        ({"url": "https://user:pw@example.test/"}, "url: must not contain a user name or password"),
        ({"url": "https://example.test/\x00"}, "url:"),
        ({"topics": ["project.nothing"]}, "topics: unknown topic &#x27;project.nothing&#x27;"),
        ({"topics": []}, "topics:"),
        ({"customHeaders": "X-Big: " + "v" * 1001}, "customHeaders: X-Big: Ensure this field has no more than 1000"),
        ({"customHeaders": "X-Apertur-Signature: mine"}, "X-Apertur-Signature is set by Apertur"),
        ({"customHeaders": "X-Tenant: a\x00b"}, "customHeaders: X-Tenant: Null characters are not allowed."),
        ({"customHeaders": "X-Tenant: a\x07b"}, "the value of X-Tenant must be Latin-1 text without control"),
        ({"customHeaders": "no colon here"}, "customHeaders: line 1: write a header as Name: value"),
        ({"customHeaders": "X-A: 1\nX-A: 2"}, "X-A is given twice"),
        ({"maxRetries": "21"}, "maxRetries: Ensure this value is less than or equal to 20."),
        ({"maxRetries": "lots"}, "maxRetries: A valid integer is required."),
        ({"retryIntervals": "5, soon"}, "retryIntervals: line 2: A valid integer is required."),
        ({"disableAfterFailures": "0"}, "disableAfterFailures:"),
        ({"signatureMethod": "md5"}, "signatureMethod:"),
    ],
)
def test_bad_input_is_said_with_the_apis_message_and_makes_nothing(owner, fields, said):
    body = {"url": HOOK_URL, "topics": ["*"], **fields}

    response = signed_in(owner.user).post(pages_url(owner), body)

    assert response.status_code == 400
    assert said in response.content.decode()
    assert not EventWebhook.objects.filter(project=owner.project).exists()


def test_a_refused_form_keeps_what_was_ticked_and_typed(owner):
    response = signed_in(owner.user).post(
        pages_url(owner), {"url": "ftp://x", "topics": ["project.upload.*"], "customHeaders": "X-Tenant: acme"}
    )

    page = response.content.decode()
    assert 'value="project.upload.*" checked' in page and 'value="*" checked' not in page
    assert 'value="ftp://x"' in page and "X-Tenant: acme</textarea>" in page


def test_the_projects_webhook_limit_is_said_on_the_form(owner, settings):
    settings.APERTUR_EVENT_WEBHOOKS_PER_PROJECT = 1
    client = signed_in(owner.user)
    client.post(pages_url(owner), {"url": HOOK_URL, "topics": ["*"]})

    response = client.post(pages_url(owner), {"url": HOOK_URL, "topics": ["*"]})

    assert response.status_code == 409
    assert "A project has at most 1 event webhooks" in response.content.decode()
    assert EventWebhook.objects.filter(project=owner.project).count() == 1


# --- edit, switch, delete --------------------------------------------------------------------------


def test_the_edit_form_shows_the_settings_and_saves_changes_through_the_service(owner, webhook):
    client = signed_in(owner.user)
    EventWebhook.objects.filter(pk=webhook.pk).update(custom_headers={"X-Tenant": "acme"})

    form = client.get(pages_url(owner, str(webhook.pk), "edit")).content.decode()
    saved = client.post(
        pages_url(owner, str(webhook.pk), "edit"),
        {
            "url": "https://new.example.test/h",
            "topics": ["project.session.*"],
            "signatureMethod": "hmac_sha256",
            "maxRetries": "2",
            "retryIntervals": "1 2",
            "disableAfterFailures": "3",
            "customHeaders": "",
        },
    )

    assert f'value="{HOOK_URL}"' in form and 'value="*" checked' in form and "X-Tenant: acme</textarea>" in form
    assert saved.status_code == 302
    webhook.refresh_from_db()
    assert (webhook.url, webhook.topics, webhook.max_retries) == (
        "https://new.example.test/h",
        ["project.session.*"],
        2,
    )
    assert (webhook.retry_intervals, webhook.disable_after_failures, webhook.custom_headers) == ([1, 2], 3, {})


def test_a_bad_edit_is_said_and_changes_nothing(owner, webhook):
    response = signed_in(owner.user).post(
        pages_url(owner, str(webhook.pk), "edit"), {"url": HOOK_URL, "topics": ["nope"]}
    )

    assert response.status_code == 400 and "topics: unknown topic" in response.content.decode()
    webhook.refresh_from_db()
    assert webhook.topics == ["*"]


def test_switching_a_webhook_on_again_clears_its_failures(owner, webhook):
    client = signed_in(owner.user)
    EventWebhook.objects.filter(pk=webhook.pk).update(
        is_active=False, consecutive_failures=20, disabled_at=timezone.now()
    )

    listed = client.get(pages_url(owner)).content.decode()
    client.post(pages_url(owner, str(webhook.pk), "active"), {"isActive": "true"})

    webhook.refresh_from_db()
    assert "20 failed in a row" in listed and "Switch on" in listed
    assert (webhook.is_active, webhook.consecutive_failures, webhook.disabled_at) == (True, 0, None)


@pytest.mark.parametrize("said", ["", "yes", "1", "\x00"])
def test_a_switch_that_is_not_true_or_false_is_refused(owner, webhook, said):
    response = signed_in(owner.user).post(pages_url(owner, str(webhook.pk), "active"), {"isActive": said})

    assert response.status_code == 400
    assert EventWebhook.objects.get(pk=webhook.pk).is_active


def test_the_delete_button_asks_first_and_names_the_webhook(owner, webhook):
    page = signed_in(owner.user).get(pages_url(owner)).content.decode()

    assert f'aria-label="Delete the webhook to {HOOK_URL}" data-confirm="Delete the webhook to {HOOK_URL}' in page


# --- the list's last delivery, Test -----------------------------------------------------------------


def test_the_list_shows_each_webhooks_last_delivery_and_failures(owner, webhook):
    seed_delivery(webhook, status="sent", when=timezone.now() - timedelta(hours=2), response_code=200)
    seed_delivery(webhook, status="failed", when=timezone.now(), response_code=503)
    quiet, _ = event_webhook_create(project=owner.project, url="https://quiet.example.test/", topics=["*"])

    page = signed_in(owner.user).get(pages_url(owner)).content.decode()

    row = page.split(f'id="webhook-{webhook.pk}"')[1].split("</tr>")[0]
    quiet_row = page.split(f'id="webhook-{quiet.pk}"')[1].split("</tr>")[0]
    assert 'badge-bad">failed' in row and "HTTP 503" in row and "HTTP 503 from the webhook" in row
    assert "none yet" in quiet_row


def test_test_against_a_receiver_shows_success_in_the_webhooks_row(owner, webhook_receiver):
    webhook, _ = event_webhook_create(project=owner.project, url=f"{webhook_receiver.url}/events", topics=["*"])
    client = signed_in(owner.user)

    tested = client.post(pages_url(owner, str(webhook.pk), "test"))
    page = client.get(tested["Location"]).content.decode()

    received = webhook_receiver.wait_for_requests(1)[0]
    assert received.header("X-Apertur-Event") == "project.webhook.test"
    row = page.split(f'id="webhook-{webhook.pk}"')[1].split("</tr>")[0]
    assert "Test event delivered: HTTP 200." in row and "badge-ok" in row
    assert tested["Location"].endswith(f"#webhook-{webhook.pk}")
    assert "Test event" not in client.get(pages_url(owner)).content.decode()  # said once


def test_test_against_a_refusing_receiver_shows_failure(owner, webhook_receiver):
    webhook_receiver.respond = lambda request: 500
    webhook, _ = event_webhook_create(project=owner.project, url=f"{webhook_receiver.url}/events", topics=["*"])
    client = signed_in(owner.user)

    page = client.post(pages_url(owner, str(webhook.pk), "test"), follow=True).content.decode()

    row = page.split(f'id="webhook-{webhook.pk}"')[1].split("</tr>")[0]
    assert "Test event not delivered: HTTP 500 from the webhook." in row and "badge-bad" in row


def test_test_against_a_closed_port_shows_the_connection_failure(owner):
    webhook, _ = event_webhook_create(project=owner.project, url="http://127.0.0.1:9/closed", topics=["*"])

    page = signed_in(owner.user).post(pages_url(owner, str(webhook.pk), "test"), follow=True).content.decode()

    assert "Test event not delivered: could not reach the webhook" in page


# --- deliveries ------------------------------------------------------------------------------------


def test_a_delivery_shows_its_request_without_the_secret_and_its_response(owner, webhook):
    EventWebhook.objects.filter(pk=webhook.pk).update(custom_headers={"X-Tenant": "acme"})
    delivery = seed_delivery(webhook, response_body="busy <b>now</b>")

    page = signed_in(owner.user).get(pages_url(owner, str(webhook.pk), "deliveries")).content.decode()

    row = page.split(f'id="delivery-{delivery.pk}"')[1].split("</tbody>")[0]
    assert "project.session.created" in row and "failed" in row and "<td>6</td>" in row
    assert f"X-Apertur-Delivery-Id: {delivery.pk}" in row and "X-Tenant: acme" in row
    assert "X-Apertur-Signature: (made with the webhook&#x27;s secret at each attempt; not shown)" in row
    assert "&quot;label&quot;: &quot;claim 4711&quot;" in row  # the body, escaped
    assert "HTTP 503" in row and "busy &lt;b&gt;now&lt;/b&gt;" in row
    assert webhook.secret not in page


def test_a_svix_webhooks_delivery_shows_its_svix_id_and_no_signature(owner):
    webhook, _ = event_webhook_create(project=owner.project, url=HOOK_URL, topics=["*"], signature_method="svix")
    delivery = seed_delivery(webhook)

    page = signed_in(owner.user).get(pages_url(owner, str(webhook.pk), "deliveries")).content.decode()

    assert f"svix-id: {delivery.pk}" in page and "svix-signature: (made with the webhook" in page
    assert "X-Apertur-Signature" not in page and webhook.secret not in page


def test_retry_puts_a_failed_delivery_back_and_a_sent_one_is_said_not_failed(owner, roles, webhook):
    failed = seed_delivery(webhook, status="failed")
    sent = seed_delivery(webhook, status="sent", response_code=200)
    client = signed_in(roles["admin"])

    retried = client.post(pages_url(owner, str(webhook.pk), "deliveries", str(failed.pk), "retry"))
    refused = client.post(pages_url(owner, str(webhook.pk), "deliveries", str(sent.pk), "retry"), follow=True)

    failed.refresh_from_db()
    assert retried.status_code == 302 and (failed.status, failed.attempts) == ("retrying", 0)
    assert "Only failed deliveries can be retried; this one is sent." in refused.content.decode()
    member_page = signed_in(roles["member"]).get(pages_url(owner, str(webhook.pk), "deliveries")).content.decode()
    assert "Retry the" not in member_page


def test_deliveries_are_paged_newest_first(owner, webhook):
    now = timezone.now()
    made = [seed_delivery(webhook, when=now - timedelta(minutes=minutes)) for minutes in range(25)]
    client = signed_in(owner.user)

    first = client.get(pages_url(owner, str(webhook.pk), "deliveries")).content.decode()
    second = client.get(pages_url(owner, str(webhook.pk), "deliveries") + "?page=2").content.decode()

    assert f'id="delivery-{made[0].pk}"' in first and f'id="delivery-{made[20].pk}"' not in first
    assert f'id="delivery-{made[20].pk}"' in second and "Page 2 of 2" in second and "25 deliveries" in second


@pytest.mark.parametrize("page", ["0", "x", "-1", "\x00", "9" * 30])
def test_a_bad_page_number_is_refused_not_a_500(owner, webhook, page):
    response = signed_in(owner.user).get(pages_url(owner, str(webhook.pk), "deliveries"), {"page": page})

    assert response.status_code == 400 and "page:" in response.content.decode()


# --- queries ---------------------------------------------------------------------------------------


def test_the_list_and_the_deliveries_read_a_fixed_number_of_queries(owner, webhook, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = signed_in(owner.user)
    seed_delivery(webhook)
    urls = (pages_url(owner), pages_url(owner, str(webhook.pk), "deliveries"))
    few = []
    for url in urls:
        client.get(url)
        with CaptureQueriesContext(connection) as counted:
            client.get(url)
        few.append(len(counted))
    for number in range(8):
        more, _ = event_webhook_create(project=owner.project, url=f"{HOOK_URL}/{number}", topics=["*"])
        seed_delivery(more)
    for _ in range(15):
        seed_delivery(webhook)

    for url, count in zip(urls, few, strict=True):
        with django_assert_max_num_queries(count):
            client.get(url)
