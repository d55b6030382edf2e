"""The event-webhook endpoints (docs/api.md "Event webhooks"): a key manages its project's webhooks, the secret is
shown once, settings are validated, and only matching active webhooks get events."""

import logging
import re
import uuid

import pytest

from delivery.event_webhooks import DEFAULT_DISABLE_AFTER_FAILURES, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_INTERVALS
from delivery.models import EventDelivery, EventLog, EventWebhook
from destinations.attempts import destination_record_outcome
from tests.factories import Persona, image_bytes
from tests.sessions_app.helpers import assert_validation_error, create_session, upload, webhook_destination

WEBHOOK_FIELDS = {
    "id",
    "projectId",
    "url",
    "signatureMethod",
    "topics",
    "isActive",
    "maxRetries",
    "retryIntervals",
    "disableAfterFailures",
    "consecutiveFailures",
    "customHeaders",
    "disabledAt",
    "createdAt",
    "updatedAt",
}
DELIVERY_FIELDS = {
    "id",
    "eventLogId",
    "topic",
    "status",
    "attempts",
    "responseCode",
    "responseBody",
    "durationMs",
    "lastError",
    "nextRetryAt",
    "createdAt",
    "updatedAt",
}
HOOK_URL = "https://hooks.example.test/apertur"


def webhooks_url(persona: Persona, *rest: str) -> str:
    return "/".join([f"/api/v1/projects/{persona.project.pk}/webhooks", *rest])


def create_webhook(api_client, persona: Persona, **body) -> dict:
    body.setdefault("url", HOOK_URL)
    body.setdefault("topics", ["*"])
    response = api_client.post(webhooks_url(persona), body, format="json", **persona.auth)
    assert response.status_code == 201, response.content
    return response.json()


def test_a_created_webhook_shows_its_secret_once_then_never_again_and_never_logs_it(api_client, owner, caplog):
    caplog.set_level(logging.DEBUG)

    created = create_webhook(
        api_client,
        owner,
        topics=["project.upload.*", "project.session.created"],
        signatureMethod="svix",
        maxRetries=3,
        retryIntervals=[10, 60],
        disableAfterFailures=7,
        customHeaders={"X-Tenant": "acme"},
    )

    assert set(created) == WEBHOOK_FIELDS | {"secret"}
    secret = created["secret"]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)  # hex: svix signs with bytes.fromhex(secret)
    assert created["projectId"] == str(owner.project.pk) and created["url"] == HOOK_URL
    assert created["topics"] == ["project.upload.*", "project.session.created"]
    assert (created["signatureMethod"], created["maxRetries"], created["retryIntervals"]) == ("svix", 3, [10, 60])
    assert (created["disableAfterFailures"], created["consecutiveFailures"]) == (7, 0)
    assert (created["isActive"], created["disabledAt"], created["customHeaders"]) == (True, None, {"X-Tenant": "acme"})
    listed = api_client.get(webhooks_url(owner), **owner.auth)
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()] == [created["id"]]
    assert set(listed.json()[0]) == WEBHOOK_FIELDS
    patched = api_client.patch(webhooks_url(owner, created["id"]), {"topics": ["*"]}, format="json", **owner.auth)
    assert set(patched.json()) == WEBHOOK_FIELDS
    assert secret[-4:] not in listed.content.decode() + patched.content.decode()
    assert secret not in caplog.text
    assert secret not in str(EventWebhook.objects.values_list("secret", flat=True).query)
    assert EventWebhook.objects.get().secret == secret  # stored encrypted, read back whole


def test_a_webhook_created_with_url_and_topics_only_gets_the_documented_defaults(api_client, owner):
    created = create_webhook(api_client, owner, topics=["project.session.completed"])

    assert created["signatureMethod"] == "hmac_sha256"
    assert created["maxRetries"] == DEFAULT_MAX_RETRIES
    assert created["retryIntervals"] == DEFAULT_RETRY_INTERVALS
    assert created["disableAfterFailures"] == DEFAULT_DISABLE_AFTER_FAILURES
    assert created["customHeaders"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": None}, "url"),
        ({"url": "ftp://hooks.example.test/x"}, "url"),
        ({"url": "hooks.example.test/x"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "http://exa mple.test/"}, "url"),
        ({"url": "http://example.test:99999/"}, "url"),
        ({"topics": ["project.upload.started", "project.image.deleted"]}, "topics"),
        ({"topics": []}, "topics"),
        ({"topics": "*"}, "topics"),
        ({"topics": ["project.*.started"]}, "topics"),
        ({"signatureMethod": "md5"}, "signatureMethod"),
        ({"maxRetries": -1}, "maxRetries"),
        ({"maxRetries": "many"}, "maxRetries"),
        ({"retryIntervals": [0]}, "retryIntervals"),
        ({"retryIntervals": []}, "retryIntervals"),
        ({"disableAfterFailures": 0}, "disableAfterFailures"),
        ({"customHeaders": {"X-Apertur-Signature": "sha256=forged"}}, "customHeaders"),
        ({"customHeaders": {"x-apertur-timestamp": "1"}}, "customHeaders"),
        ({"customHeaders": {"svix-signature": "v1,forged"}}, "customHeaders"),
        ({"customHeaders": {"Content-Type": "text/plain"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "line\r\nInjected: 1"}}, "customHeaders"),
        ({"customHeaders": {"Bad Name": "x"}}, "customHeaders"),
        ({"customHeaders": ["X-Tenant"]}, "customHeaders"),
        # Values requests would refuse to send, or send mangled: every attempt would fail.
        ({"customHeaders": {"X-Ok": " leading"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "trailing\t"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "trailing "}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "bell\x07"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "nul\x00"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "del\x7f"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": "c1\x85"}}, "customHeaders"),
        ({"customHeaders": {"X-Ok": 5}}, "customHeaders"),
        ({"customHeaders": {"X-" + "a" * 99: "x"}}, "customHeaders"),
        ({"customHeaders": {"X-Nul\x00": "x"}}, "customHeaders"),
        ({"customHeaders": {"": "x"}}, "customHeaders"),
        ({"customHeaders": {"X-Team": "a", "x-team": "b"}}, "customHeaders"),
        # URLs requests cannot send as given: urlsplit drops tabs and line breaks, userinfo, IDNA 2008.
        ({"url": "http://hooks.example.test/a\r\nInjected: 1"}, "url"),
        ({"url": "http://hooks.example.test/\tpath"}, "url"),
        ({"url": "http://hooks.exa\nmple.test/"}, "url"),
        ({"url": "http://hooks.example.test/\x00"}, "url"),
        ({"url": "http://hooks.example.test/\x7f"}, "url"),
        ({"url": "https://hooks.example.test/in\n"}, "url"),
        ({"url": "http://user:pass@hooks.example.test/"}, "url"),
        ({"url": "http://user@hooks.example.test/"}, "url"),
        ({"url": "http://@hooks.example.test/"}, "url"),
        ({"url": "http://☃.net/"}, "url"),
        ({"url": 42}, "url"),
        ({"topics": ["project.upload.started\x00"]}, "topics"),
        ({"topics": [1]}, "topics"),
        ({"topics": ["*"] * 51}, "topics"),
    ],
)
def test_invalid_settings_are_refused_with_400_naming_the_field(api_client, owner, body, field):
    body = {"url": HOOK_URL, "topics": ["*"], **body}

    response = api_client.post(webhooks_url(owner), body, format="json", **owner.auth)

    assert_validation_error(response, field)
    assert not EventWebhook.objects.exists()


def test_valid_edge_settings_are_kept_as_given(api_client, owner):
    created = create_webhook(
        api_client,
        owner,
        url="https://bücher.example.test/in?a=1#frag",
        customHeaders={"X-" + "a" * 98: "", "X-Latin": "café au lait", "X-Inner": "a b  c"},
    )

    assert created["url"] == "https://bücher.example.test/in?a=1#frag"
    assert created["customHeaders"]["X-Latin"] == "café au lait"


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "yes", None, "on"])
def test_is_active_takes_only_json_booleans(api_client, owner, value):
    created = create_webhook(api_client, owner)

    response = api_client.patch(webhooks_url(owner, created["id"]), {"isActive": value}, format="json", **owner.auth)

    assert_validation_error(response, "isActive")
    assert EventWebhook.objects.get().is_active is True


def test_a_project_at_its_webhook_cap_refuses_one_more_with_409(api_client, owner, settings):
    settings.APERTUR_EVENT_WEBHOOKS_PER_PROJECT = 2
    first = create_webhook(api_client, owner)
    create_webhook(api_client, owner)

    refused = api_client.post(webhooks_url(owner), {"url": HOOK_URL, "topics": ["*"]}, format="json", **owner.auth)

    assert refused.status_code == 409, refused.content
    assert refused.json() == {
        "message": "A project has at most 2 event webhooks; delete one first.",
        "code": "WEBHOOK_LIMIT_REACHED",
        "statusCode": 409,
        "error": "Conflict",
    }
    assert EventWebhook.objects.count() == 2
    assert api_client.delete(webhooks_url(owner, first["id"]), **owner.auth).status_code == 204
    create_webhook(api_client, owner)


def test_the_webhook_cap_counts_per_project(api_client, owner, outsider, settings):
    settings.APERTUR_EVENT_WEBHOOKS_PER_PROJECT = 1
    create_webhook(api_client, owner)

    create_webhook(api_client, outsider)

    assert EventWebhook.objects.count() == 2


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://hooks.example.test/\x00", "topics": ["*"]},
        {"url": HOOK_URL, "topics": ["*\x00"]},
        {"url": HOOK_URL, "topics": ["*"], "customHeaders": {"X-A\x00": "b"}},
        {"url": HOOK_URL, "topics": ["*"], "customHeaders": {"X-A": "b\x00"}},
        {"url": HOOK_URL, "topics": ["*"], "signatureMethod": "svix\x00"},
        {"url": HOOK_URL, "topics": ["*"], "isActive\x00": True},
    ],
)
def test_a_nul_anywhere_in_a_body_is_a_400_or_ignored_never_a_500(api_client, owner, body):
    # JSONB cannot hold U+0000, so on PostgreSQL a NUL that reached a JSON column would be a 500.
    created = api_client.post(webhooks_url(owner), body, format="json", **owner.auth)
    webhook = create_webhook(api_client, owner)
    patched = api_client.patch(webhooks_url(owner, webhook["id"]), body, format="json", **owner.auth)

    for response in (created, patched):
        assert response.status_code in (201, 200, 400), response.content
        if response.status_code == 400:
            assert response.json()["code"] == "VALIDATION_ERROR"


def test_a_nul_in_a_query_or_path_is_not_a_500(api_client, owner):
    webhook = create_webhook(api_client, owner)

    listed = api_client.get(webhooks_url(owner, webhook["id"], "deliveries"), {"page": "1\x00"}, **owner.auth)
    missing = api_client.post(webhooks_url(owner, webhook["id"] + "%00", "test"), **owner.auth)
    retried = api_client.post(webhooks_url(owner, webhook["id"], "deliveries", "x%00y", "retry"), **owner.auth)

    assert_validation_error(listed, "page")
    assert (missing.status_code, retried.status_code) == (404, 404)


def test_a_patch_changes_only_what_it_names_and_is_validated_like_create(api_client, owner):
    created = create_webhook(api_client, owner)

    response = api_client.patch(
        webhooks_url(owner, created["id"]),
        {"url": "http://other.example.test/in", "retryIntervals": [1, 2], "customHeaders": {"X-A": "b"}},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 200, response.content
    patched = response.json()
    assert (patched["url"], patched["retryIntervals"], patched["customHeaders"]) == (
        "http://other.example.test/in",
        [1, 2],
        {"X-A": "b"},
    )
    assert patched["topics"] == created["topics"] and patched["maxRetries"] == created["maxRetries"]
    refused = api_client.patch(webhooks_url(owner, created["id"]), {"topics": ["nope"]}, format="json", **owner.auth)
    assert_validation_error(refused, "topics")


def test_switching_a_webhook_off_and_on_sets_and_clears_disabled_at_and_the_failure_count(api_client, owner):
    created = create_webhook(api_client, owner)
    url = webhooks_url(owner, created["id"])

    off = api_client.patch(url, {"isActive": False}, format="json", **owner.auth).json()
    EventWebhook.objects.filter(pk=created["id"]).update(consecutive_failures=4)
    on = api_client.patch(url, {"isActive": True}, format="json", **owner.auth).json()

    assert off["isActive"] is False and off["disabledAt"] is not None
    assert (on["isActive"], on["disabledAt"], on["consecutiveFailures"]) == (True, None, 0)


def test_a_deleted_webhook_is_gone_with_its_deliveries(api_client, owner):
    created = create_webhook(api_client, owner)
    create_session(api_client, owner)
    assert EventDelivery.objects.count() == 1

    response = api_client.delete(webhooks_url(owner, created["id"]), **owner.auth)

    assert response.status_code == 204
    assert api_client.get(webhooks_url(owner), **owner.auth).json() == []
    assert not EventDelivery.objects.exists()
    assert api_client.delete(webhooks_url(owner, created["id"]), **owner.auth).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", "{webhook}"),
        ("delete", "{webhook}"),
        ("post", "{webhook}/test"),
        ("get", "{webhook}/deliveries"),
        ("post", "{webhook}/deliveries/{delivery}/retry"),
    ],
)
def test_another_projects_webhook_is_not_found_and_untouched(api_client, owner, outsider, method, path):
    created = create_webhook(api_client, owner)
    create_session(api_client, owner)
    delivery = EventDelivery.objects.get()
    EventDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    filled = path.format(webhook=created["id"], delivery=delivery.pk)

    through_own_project = getattr(api_client, method)(
        webhooks_url(outsider, filled), {"isActive": False}, format="json", **outsider.auth
    )
    through_owner_project = getattr(api_client, method)(
        webhooks_url(owner, filled), {"isActive": False}, format="json", **outsider.auth
    )

    for response in (through_own_project, through_owner_project):
        assert response.status_code == 404, response.content
        assert response.json()["code"] == "NOT_FOUND"
    stored = EventWebhook.objects.get(pk=created["id"])
    assert stored.is_active is True
    assert EventDelivery.objects.get().status == "failed"


def test_listing_another_projects_webhooks_or_a_malformed_id_is_not_found(api_client, owner, outsider):
    create_webhook(api_client, owner)

    assert api_client.get(webhooks_url(owner), **outsider.auth).status_code == 404
    assert api_client.patch(webhooks_url(owner, "not-a-uuid"), {}, format="json", **owner.auth).status_code == 404
    assert api_client.get(webhooks_url(owner)).status_code == 401


def test_webhook_answers_carry_the_rate_limit_headers(api_client, owner):
    response = api_client.get(webhooks_url(owner), **owner.auth)

    assert response.status_code == 200
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers)


def test_only_active_webhooks_whose_topics_match_get_an_event(api_client, owner):
    uploads = create_webhook(api_client, owner, topics=["project.upload.*"])
    created_only = create_webhook(api_client, owner, topics=["project.session.created"])
    everything = create_webhook(api_client, owner, topics=["*"])
    switched_off = create_webhook(api_client, owner, topics=["*"])
    api_client.patch(webhooks_url(owner, switched_off["id"]), {"isActive": False}, format="json", **owner.auth)

    session = create_session(api_client, owner)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201

    def topics(webhook: dict) -> list[str]:
        rows = EventDelivery.objects.filter(webhook_id=webhook["id"]).order_by("created_at")
        return [row.event.topic for row in rows]

    assert topics(uploads) == ["project.upload.started"]
    assert topics(created_only) == ["project.session.created"]
    assert topics(everything) == ["project.session.created", "project.upload.started"]
    assert topics(switched_off) == []
    assert EventLog.objects.count() == 2  # one row per event, one delivery per webhook


def test_a_project_without_a_matching_active_webhook_writes_no_event(api_client, owner):
    create_webhook(api_client, owner, topics=["project.destination.needs_reconnect"])

    session = create_session(api_client, owner)
    upload(api_client, session["id"], image_bytes())

    assert not EventLog.objects.exists() and not EventDelivery.objects.exists()


def test_a_destination_flagged_for_reconnect_makes_one_event_per_flagging(api_client, owner):
    create_webhook(api_client, owner, topics=["project.destination.*"])
    destination = webhook_destination(owner)

    destination_record_outcome(destination_id=str(destination.pk), error="HTTP 401", needs_reconnect=True)
    destination_record_outcome(destination_id=str(destination.pk), error="HTTP 401", needs_reconnect=True)

    event = EventLog.objects.get()
    assert event.topic == "project.destination.needs_reconnect"
    assert event.data == {
        "destination_id": str(destination.pk),
        "destination_type": "webhook",
        "destination_name": "receiver",
        "error": "HTTP 401",
    }
    destination_record_outcome(destination_id=str(destination.pk))  # a success clears the flag
    destination_record_outcome(destination_id=str(destination.pk), error="HTTP 403", needs_reconnect=True)
    assert EventLog.objects.count() == 2


def test_the_deliveries_list_is_paginated_newest_first(api_client, owner):
    created = create_webhook(api_client, owner, topics=["project.session.created"])
    sessions = [create_session(api_client, owner)["id"] for _ in range(3)]

    first = api_client.get(webhooks_url(owner, created["id"], "deliveries") + "?page=1&limit=2", **owner.auth)
    second = api_client.get(webhooks_url(owner, created["id"], "deliveries") + "?page=2&limit=2", **owner.auth)

    assert first.status_code == 200, first.content
    assert set(first.json()) == {"deliveries", "total", "page", "limit"}
    assert (first.json()["total"], first.json()["page"], first.json()["limit"]) == (3, 1, 2)
    rows = first.json()["deliveries"] + second.json()["deliveries"]
    assert len(first.json()["deliveries"]) == 2 and len(second.json()["deliveries"]) == 1
    assert all(set(row) == DELIVERY_FIELDS for row in rows)
    events = EventLog.objects.in_bulk([row["eventLogId"] for row in rows])
    assert [events[uuid.UUID(row["eventLogId"])].data["session_id"] for row in rows] == sessions[::-1]
    row = rows[0]
    assert (row["topic"], row["status"], row["attempts"], row["responseCode"]) == (
        "project.session.created",
        "retrying",
        0,
        None,
    )
    defaults = api_client.get(webhooks_url(owner, created["id"], "deliveries"), **owner.auth).json()
    assert (defaults["page"], defaults["limit"], defaults["total"]) == (1, 20, 3)
    bad = api_client.get(webhooks_url(owner, created["id"], "deliveries") + "?limit=1000", **owner.auth)
    assert_validation_error(bad, "limit")


def test_only_a_failed_delivery_can_be_retried_and_only_while_the_webhook_is_on(api_client, owner):
    created = create_webhook(api_client, owner, topics=["project.session.created"])
    create_session(api_client, owner)
    delivery = EventDelivery.objects.get()
    retry_url = webhooks_url(owner, created["id"], "deliveries", str(delivery.pk), "retry")

    waiting = api_client.post(retry_url, **owner.auth)
    EventDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=6, last_error="HTTP 500")
    api_client.patch(webhooks_url(owner, created["id"]), {"isActive": False}, format="json", **owner.auth)
    switched_off = api_client.post(retry_url, **owner.auth)
    api_client.patch(webhooks_url(owner, created["id"]), {"isActive": True}, format="json", **owner.auth)
    retried = api_client.post(retry_url, **owner.auth)

    assert (waiting.status_code, waiting.json()["code"]) == (409, "NOT_FAILED")
    assert (switched_off.status_code, switched_off.json()["code"]) == (409, "WEBHOOK_INACTIVE")
    assert retried.status_code == 200 and set(retried.json()) == {"message"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 0)
