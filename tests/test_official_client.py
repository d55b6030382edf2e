"""The official Python client (`apertur-sdk`, unchanged) against a live server: the compatibility target."""

import pytest
from apertur_sdk import Apertur
from apertur_sdk.errors import AuthenticationError, NotFoundError, ValidationError

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
