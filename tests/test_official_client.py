"""The official Python client (`apertur-sdk`, unchanged) against a live server: the compatibility target."""

import json

import httpx
import pytest
from apertur_sdk import Apertur
from apertur_sdk.errors import AperturError, AuthenticationError, NotFoundError, ValidationError
from apertur_sdk.signature import verify_svix_signature

from delivery.models import Delivery
from tests.factories import image_bytes, make_persona, wait_until


@pytest.fixture
def client(live_server_process):
    persona = make_persona("sdk-user")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        yield sdk, persona


def test_official_client_manages_destinations_sessions_uploads_and_status(client, webhook_receiver):
    sdk, persona = client
    project_id = str(persona.project.pk)

    destination = sdk.destinations.create(
        project_id,
        type="webhook",
        name="Receiver",
        config={"url": f"{webhook_receiver.url}/in", "secret": "sdk-secret-1"},
    )
    assert destination["config"]["secret"] == "••••et-1"
    assert [item["id"] for item in sdk.destinations.list(project_id)] == [destination["id"]]
    renamed = sdk.destinations.update(project_id, destination["id"], name="Renamed", is_active=True)
    assert renamed["name"] == "Renamed"
    tested = sdk.destinations.test(project_id, destination["id"])
    assert tested["success"] is True and tested["status"] == 200
    webhook_receiver.wait_for_requests(1)

    session = sdk.sessions.create(destination_ids=[destination["id"]], password="open-sesame", tags=["order:7"])
    assert session["id"].startswith("sess_") and session["uuid"] == session["id"]
    public = sdk.sessions.get(session["id"])
    assert public["password_protected"] is True and public["imagesCount"] == 0
    with pytest.raises(AuthenticationError):
        sdk.upload.image(session["id"], image_bytes(), filename="shot.jpg", password="wrong-one")
    assert sdk.sessions.verify_password(session["id"], "wrong-one") == {"valid": False}
    assert sdk.sessions.verify_password(session["id"], "open-sesame") == {"valid": True}

    uploaded = sdk.upload.image(session["id"], image_bytes(), filename="shot.jpg", password="open-sesame")
    assert uploaded["image_index"] == 0 and uploaded["mime_type"] == "image/jpeg"

    [_, delivered] = webhook_receiver.wait_for_requests(2)
    assert delivered.header("X-Aptr-Image-Id") == uploaded["id"]
    wait_until(lambda: Delivery.objects.filter(status="delivered").exists())
    status = sdk.sessions.delivery_status(session["id"])
    assert status["files"][0]["destinations"][0]["status"] == "delivered"
    assert status["images"][0]["deliveries"][0]["destination_type"] == "webhook"

    page = sdk.sessions.list(page=1, page_size=10)
    assert page["total"] == 1 and page["data"][0]["id"] == session["id"]
    assert page["data"][0]["imagesDelivered"] == 1
    assert [row["id"] for row in sdk.sessions.recent(limit=5)] == [session["id"]]

    updated = sdk.sessions.update(session["id"], max_images=5, password=None)
    assert updated["effectiveMaxImages"] == 5 and updated["password_protected"] is False

    sdk.destinations.delete(project_id, destination["id"])
    assert sdk.destinations.list(project_id) == []
    with pytest.raises(NotFoundError):
        sdk.destinations.test(project_id, destination["id"])
    with pytest.raises(ValidationError):
        sdk.sessions.create(destination_ids=["not-a-destination"])


def test_official_client_encrypted_upload_is_decrypted_and_delivered_as_the_original(client, webhook_receiver):
    sdk, persona = client
    destination = sdk.destinations.create(
        str(persona.project.pk),
        type="webhook",
        name="Receiver",
        config={"url": f"{webhook_receiver.url}/in", "secret": "sdk-secret-1", "format": "binary"},
    )
    session = sdk.sessions.create(destination_ids=[destination["id"]])
    original = image_bytes("PNG", size=(40, 30))
    public_key = sdk.encryption.get_server_key()["publicKey"]

    uploaded = sdk.upload.image_encrypted(session["id"], original, public_key, filename="private.png")

    assert (uploaded["filename"], uploaded["mime_type"]) == ("private.png", "image/png")
    [delivered] = webhook_receiver.wait_for_requests(1)
    assert delivered.body == original
    assert sdk.sessions.get(session["id"])["serverPublicKey"] == public_key


def test_official_client_manages_keys_and_reads_uploads_and_stats(client, webhook_receiver):
    sdk, persona = client
    project_id = str(persona.project.pk)
    assert [key["id"] for key in sdk.keys.list(project_id)] == [str(persona.api_key.pk)]

    created = sdk.keys.create(project_id, label="Kiosk", max_images=3, allowed_mime_types=["image/jpeg", "image/png"])
    key, plain = created["key"], created["plainTextKey"]
    assert plain.startswith("aptr_live_") and key["prefix"] == plain[:14]
    assert (key["label"], key["maxImages"], key["env"], key["isActive"]) == ("Kiosk", 3, "live", True)
    assert all(plain not in str(row) for row in sdk.keys.list(project_id))
    updated = sdk.keys.update(
        project_id, key["id"], label="Kiosk 2", max_images=4, allowed_ips=["127.0.0.1"], allowed_domains=["a.example"]
    )
    assert (updated["label"], updated["maxImages"], updated["allowedIps"]) == ("Kiosk 2", 4, ["127.0.0.1"])
    destination = sdk.destinations.create(
        project_id,
        type="webhook",
        name="Receiver",
        config={"url": f"{webhook_receiver.url}/in", "secret": "sdk-secret-1"},
    )
    assert sdk.keys.set_destinations(key["id"], [destination["id"]], long_polling_enabled=True) == {
        "destinations": [{"id": destination["id"], "type": "webhook", "name": "Receiver", "isActive": True}],
        "longPollingEnabled": True,
    }
    with pytest.raises(AperturError) as refused:
        sdk.keys.delete(project_id, str(persona.api_key.pk))
    assert refused.value.status_code == 403

    signing = httpx.post(
        f"{sdk._http._base_url}/api/v1/projects/{project_id}/keys/{key['id']}/signing-secret",
        headers={"Authorization": f"Bearer {persona.plain_key}"},
    )
    assert signing.status_code == 201, signing.text
    secret = signing.json()["signingSecret"]
    base_url = sdk._http._base_url
    with Apertur(api_key=plain, base_url=base_url, signing_secret=secret) as kiosk:
        session = kiosk.sessions.create(tags=["kiosk"])
        assert (session["max_images"], session["long_polling"]) == (4, True)
        assert session["destinations"] == [{"id": destination["id"], "type": "webhook", "name": "Receiver"}]
        uploaded = kiosk.upload.image(session["id"], image_bytes(), filename="one.jpg")
        public_key = kiosk.encryption.get_server_key()["publicKey"]
        encrypted = kiosk.upload.image_encrypted(session["id"], image_bytes("PNG"), public_key, filename="two.png")
        webhook_receiver.wait_for_requests(2)
        wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 2)

        page = kiosk.uploads.list(page=1, page_size=1)
        recent = kiosk.uploads.recent(limit=5)
        stats = kiosk.stats.get()
    for wrong in (None, "0" * 64):
        with (
            Apertur(api_key=plain, base_url=base_url, signing_secret=wrong) as unsigned,
            pytest.raises(AuthenticationError),
        ):
            unsigned.uploads.recent()

    assert (page["total"], page["totalPages"], [row["id"] for row in page["data"]]) == (2, 2, [encrypted["id"]])
    assert [row["id"] for row in recent] == [encrypted["id"], uploaded["id"]]
    assert [(row["filename"], row["isEncrypted"], row["status"]) for row in recent] == [
        ("two.png", True, "delivered"),
        ("one.jpg", False, "delivered"),
    ]
    assert recent[0]["destinationsBreakdown"] == [{"type": "webhook", "count": 1}]
    assert (stats["sessionsTotal"], stats["imagesUploaded"], stats["imagesDelivered"]) == (1, 2, 2)
    assert (stats["deliverySuccessRate"], stats["totalProjects"], stats["activeKeys"]) == (100.0, 1, 2)
    assert stats["topProjects"] == [{"id": project_id, "name": persona.project.name, "sessions": 1}]
    [own, kiosk_row] = sdk.keys.list(project_id)
    assert kiosk_row["signingEnabled"] is True and kiosk_row["lastUsedAt"] is not None

    assert sdk.keys.delete(project_id, key["id"]) is None
    with (
        Apertur(api_key=plain, base_url=base_url, signing_secret=secret) as revoked,
        pytest.raises(AuthenticationError),
    ):
        revoked.stats.get()
    assert [row["id"] for row in sdk.keys.list(project_id)] == [own["id"]]


def test_official_client_manages_event_webhooks_their_deliveries_retries_and_tests(client, webhook_receiver):
    sdk, persona = client
    project_id = str(persona.project.pk)
    answer = {"status": 500}
    webhook_receiver.respond = lambda request: answer["status"]

    created = sdk.webhooks.create(
        project_id,
        url=f"{webhook_receiver.url}/events",
        topics=["project.session.*"],
        signature_method="svix",
        max_retries=0,
        retry_intervals=[1],
        disable_after_failures=5,
        custom_headers={"X-Tenant": "acme"},
    )
    secret = created["secret"]
    assert len(secret) == 64 and bytes.fromhex(secret)
    [listed] = sdk.webhooks.list(project_id)
    assert listed["id"] == created["id"] and "secret" not in listed  # only the create answer shows it
    assert sdk.webhooks.test(project_id, created["id"]) == {
        "message": "Test event not delivered: HTTP 500 from the webhook."
    }
    answer["status"] = 200
    assert sdk.webhooks.test(project_id, created["id"]) == {"message": "Test event delivered: HTTP 200."}

    answer["status"] = 500
    session = sdk.sessions.create(long_polling=True)

    def latest_delivery_status(wanted: str) -> dict | None:
        rows = sdk.webhooks.deliveries(project_id, created["id"])["deliveries"]
        return rows[0] if rows and rows[0]["status"] == wanted else None

    failed = wait_until(lambda: latest_delivery_status("failed"))
    assert (failed["topic"], failed["attempts"], failed["responseCode"]) == ("project.session.created", 1, 500)
    answer["status"] = 200
    assert set(sdk.webhooks.retry_delivery(project_id, created["id"], failed["id"])) == {"message"}
    sent = wait_until(lambda: latest_delivery_status("sent"))
    assert (sent["id"], sent["attempts"], sent["responseCode"], sent["lastError"]) == (failed["id"], 1, 200, None)
    requests = webhook_receiver.wait_for_requests(4)
    delivered = requests[-1]
    assert delivered.header("svix-id") == failed["id"] and delivered.header("X-Tenant") == "acme"
    assert verify_svix_signature(
        delivered.body.decode(),
        delivered.header("svix-id"),
        delivered.header("svix-timestamp"),
        delivered.header("svix-signature"),
        secret,
    )
    assert json.loads(delivered.body)["data"]["session_id"] == session["id"]
    page = sdk.webhooks.deliveries(project_id, created["id"], page=1, limit=1)
    assert (page["total"], page["page"], page["limit"], len(page["deliveries"])) == (1, 1, 1, 1)

    updated = sdk.webhooks.update(project_id, created["id"], topics=["*"], is_active=False, max_retries=2)
    assert (updated["topics"], updated["isActive"], updated["maxRetries"]) == (["*"], False, 2)
    assert updated["disabledAt"] is not None
    assert sdk.webhooks.delete(project_id, created["id"]) is None
    assert sdk.webhooks.list(project_id) == []
    with pytest.raises(NotFoundError):
        sdk.webhooks.test(project_id, created["id"])
    with pytest.raises(ValidationError):
        sdk.webhooks.create(project_id, url="ftp://example.test/", topics=["*"])
