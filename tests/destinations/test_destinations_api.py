"""The destination endpoints (docs/api.md "Destinations") through HTTP with an API key, and one upload delivered end
to end."""

import hashlib
import hmac

import pytest
from django.utils import timezone

from delivery.models import Delivery
from delivery.services import delivery_execute
from tests.destinations.helpers import FixedAnswerServer, create_destination, create_session, upload_image
from tests.factories import make_persona, noisy_jpeg, wait_until

WEBHOOK_SECRET = "hook-secret-value-4321"
S3_SECRET = "testingsecret"
DOCUMENT_KEYS = {
    "id",
    "type",
    "name",
    "config",
    "isActive",
    "createdAt",
    "updatedAt",
    "lastDeliveryAt",
    "lastError",
    "needsReconnect",
}


def destinations_url(persona, destination_id: str | None = None, action: str | None = None) -> str:
    url = f"/api/v1/projects/{persona.project.pk}/destinations"
    return "/".join(part for part in (url, destination_id, action) if part)


def webhook_config(receiver, **overrides) -> dict:
    return {"url": f"{receiver.url}/hook", "secret": WEBHOOK_SECRET, **overrides}


def signed_with(request, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return request.header("X-Apertur-Signature") == expected


def assert_no_secret(response, *secrets: str) -> None:
    for secret in secrets:
        assert secret.encode() not in response.content, f"{secret!r} leaked in {response.content!r}"


def assert_validation_error(response, fields: dict) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["code"], body["statusCode"], body["error"]) == ("VALIDATION_ERROR", 400, "Bad Request")
    assert body["fields"] == fields


# --- create, list, patch ----------------------------------------------------------------------------


def test_creating_a_webhook_returns_the_object_with_its_secret_masked(api_client, owner, webhook_receiver):
    response = api_client.post(
        destinations_url(owner),
        {"type": "webhook", "name": "Receiver", "config": webhook_config(webhook_receiver, format="json_base64")},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 201, response.content
    assert_no_secret(response, WEBHOOK_SECRET)
    body = response.json()
    assert set(body) == DOCUMENT_KEYS
    assert body["config"] == {"url": f"{webhook_receiver.url}/hook", "secret": "••••4321", "format": "json_base64"}
    assert (body["type"], body["name"], body["isActive"], body["needsReconnect"]) == (
        "webhook",
        "Receiver",
        True,
        False,
    )
    assert body["lastDeliveryAt"] is None and body["lastError"] is None


def test_creating_an_s3_destination_masks_the_secret_key(api_client, owner, moto_server):
    config = moto_server.destination_config("media", pathTemplate="{date}/{image_id}.{ext}")

    response = api_client.post(
        destinations_url(owner), {"type": "s3", "name": "Bucket", "config": config}, format="json", **owner.auth
    )

    assert response.status_code == 201, response.content
    assert_no_secret(response, S3_SECRET)
    assert response.json()["config"] == {**config, "secretKey": "••••cret"}


def test_the_list_shows_only_this_projects_destinations_and_no_secret(
    api_client, owner, outsider, webhook_receiver, moto_server
):
    webhook = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver), name="Hook")
    bucket = create_destination(api_client, owner, "s3", moto_server.destination_config("media"), name="Bucket")
    create_destination(api_client, outsider, "webhook", webhook_config(webhook_receiver), name="Not yours")

    response = api_client.get(destinations_url(owner), **owner.auth)

    assert response.status_code == 200
    assert_no_secret(response, WEBHOOK_SECRET, S3_SECRET)
    assert [item["id"] for item in response.json()] == [webhook["id"], bucket["id"]]
    foreign = api_client.get(destinations_url(outsider), **owner.auth)
    assert (foreign.status_code, foreign.json()["code"]) == (404, "NOT_FOUND")


def test_patch_merges_config_and_an_omitted_secret_keeps_signing_deliveries(api_client, owner, webhook_receiver):
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))

    response = api_client.patch(
        destinations_url(owner, destination["id"]),
        {"name": "Renamed", "config": {"format": "binary", "customHeaders": {"X-Team": "desk"}}},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 200, response.content
    assert_no_secret(response, WEBHOOK_SECRET)
    assert response.json()["name"] == "Renamed"
    assert response.json()["config"] == {
        "url": f"{webhook_receiver.url}/hook",
        "secret": "••••4321",
        "format": "binary",
        "customHeaders": {"X-Team": "desk"},
    }
    session = create_session(api_client, owner, [destination["id"]])
    image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    delivery_execute(delivery_id=str(Delivery.objects.get(image_id=image["id"]).pk))
    [request] = webhook_receiver.wait_for_requests(1)
    assert request.header("Content-Type") == "image/jpeg"  # the merged format: binary
    assert request.header("X-Team") == "desk"
    assert signed_with(request, WEBHOOK_SECRET)
    assert Delivery.objects.get(image_id=image["id"]).status == "delivered"


def test_patch_echoing_the_mask_keeps_the_secret_and_a_new_secret_replaces_it(api_client, owner, webhook_receiver):
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))
    url = destinations_url(owner, destination["id"])

    echoed = api_client.patch(url, {"config": destination["config"]}, format="json", **owner.auth)
    api_client.post(f"{url}/test", **owner.auth)
    replaced = api_client.patch(url, {"config": {"secret": "a-brand-new-secret-9876"}}, format="json", **owner.auth)
    api_client.post(f"{url}/test", **owner.auth)

    assert echoed.json()["config"]["secret"] == "••••4321"
    assert replaced.json()["config"]["secret"] == "••••9876"
    assert_no_secret(replaced, "a-brand-new-secret-9876")
    first, second = webhook_receiver.wait_for_requests(2)
    assert signed_with(first, WEBHOOK_SECRET)
    assert signed_with(second, "a-brand-new-secret-9876")


def test_patch_can_switch_a_destination_off(api_client, owner, webhook_receiver):
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))

    response = api_client.patch(
        destinations_url(owner, destination["id"]), {"isActive": False}, format="json", **owner.auth
    )

    assert response.json()["isActive"] is False
    assert response.json()["config"]["secret"] == "••••4321"


# --- validation -------------------------------------------------------------------------------------


def test_an_unknown_config_key_is_a_validation_error_on_create_and_patch(api_client, owner, webhook_receiver):
    created = api_client.post(
        destinations_url(owner),
        {"type": "webhook", "name": "Hook", "config": webhook_config(webhook_receiver, retries=3)},
        format="json",
        **owner.auth,
    )
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))
    patched = api_client.patch(
        destinations_url(owner, destination["id"]), {"config": {"Format": "binary"}}, format="json", **owner.auth
    )

    assert_validation_error(created, {"config.retries": ["unknown field"]})
    assert_validation_error(patched, {"config.Format": ["unknown field"]})
    assert_no_secret(created, WEBHOOK_SECRET)


def test_an_unknown_type_is_a_validation_error(api_client, owner):
    response = api_client.post(
        destinations_url(owner), {"type": "carrier_pigeon", "name": "Coo", "config": {}}, format="json", **owner.auth
    )

    assert_validation_error(
        response,
        {
            "type": [
                "'carrier_pigeon' is not a destination type; one of: azure_blob, ftp, onedrive, s3, webdav, webhook"
            ]
        },
    )


def test_an_unknown_path_template_variable_is_a_validation_error(api_client, owner, moto_server):
    response = api_client.post(
        destinations_url(owner),
        {"type": "s3", "name": "Bucket", "config": moto_server.destination_config("media", pathTemplate="{album}/x")},
        format="json",
        **owner.auth,
    )

    assert_validation_error(response, {"config.pathTemplate": ["unknown variable {album}"]})
    assert_no_secret(response, S3_SECRET)


UNSENDABLE_HEADER_VALUE = "the value of {name} must be printable ASCII, without line breaks or control characters"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-amz-meta-note", "first line\r\nX-Injected: yes"),
        ("Cache-Control", "max-age=60\nX-Injected: yes"),
        ("x-amz-meta-note", "nul\x00byte"),
        ("x-amz-meta-note", "delete\x7fcharacter"),
        ("Content-Disposition", "inline;\tfilename=a.jpg"),
        ("x-amz-meta-photographer", "José"),
    ],
    ids=["CRLF", "LF", "NUL", "DEL", "tab", "non-ASCII"],
)
def test_an_s3_custom_header_value_that_cannot_be_sent_is_refused_on_create_and_patch(
    api_client, owner, moto_server, name, value
):
    created = api_client.post(
        destinations_url(owner),
        {
            "type": "s3",
            "name": "Bucket",
            "config": moto_server.destination_config("media", customHeaders={name: value}),
        },
        format="json",
        **owner.auth,
    )
    kept = {"Cache-Control": "max-age=60"}
    destination = create_destination(
        api_client, owner, "s3", moto_server.destination_config("media", customHeaders=kept)
    )
    patched = api_client.patch(
        destinations_url(owner, destination["id"]),
        {"config": {"customHeaders": {name: value}}},
        format="json",
        **owner.auth,
    )

    assert_validation_error(created, {"config.customHeaders": [UNSENDABLE_HEADER_VALUE.format(name=name)]})
    assert_validation_error(patched, {"config.customHeaders": [UNSENDABLE_HEADER_VALUE.format(name=name)]})
    [listed] = api_client.get(destinations_url(owner), **owner.auth).json()
    assert (listed["id"], listed["config"]["customHeaders"]) == (destination["id"], kept)


@pytest.mark.parametrize("name", ["x-amz-meta-two words", "x-amz-meta-a\r\nX-Injected", "x-amz-meta-", "x-amz-meta-é"])
def test_an_s3_custom_header_name_that_is_no_http_token_is_refused(api_client, owner, moto_server, name):
    response = api_client.post(
        destinations_url(owner),
        {"type": "s3", "name": "Bucket", "config": moto_server.destination_config("media", customHeaders={name: "1"})},
        format="json",
        **owner.auth,
    )

    assert_validation_error(response, {"config.customHeaders": [f"{name!r} is not a valid header name"]})
    assert api_client.get(destinations_url(owner), **owner.auth).json() == []


def test_a_missing_secret_is_a_validation_error(api_client, owner):
    response = api_client.post(
        destinations_url(owner),
        {"type": "webhook", "name": "Hook", "config": {"url": "https://example.com/hook"}},
        format="json",
        **owner.auth,
    )

    assert_validation_error(response, {"config.secret": ["Field required"]})


def test_another_projects_destination_is_not_found(api_client, owner, outsider, webhook_receiver):
    theirs = create_destination(api_client, outsider, "webhook", webhook_config(webhook_receiver))

    for method, url in [
        ("patch", destinations_url(outsider, theirs["id"])),
        ("delete", destinations_url(outsider, theirs["id"])),
        ("post", destinations_url(outsider, theirs["id"], "test")),
        ("patch", destinations_url(owner, theirs["id"])),
        ("delete", destinations_url(owner, theirs["id"])),
        ("post", destinations_url(owner, theirs["id"], "test")),
    ]:
        response = getattr(api_client, method)(url, {"name": "mine now"}, format="json", **owner.auth)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "NOT_FOUND"
    assert webhook_receiver.requests == []


# --- delete -----------------------------------------------------------------------------------------


def test_delete_keeps_past_deliveries_and_fails_pending_ones(api_client, owner, webhook_receiver):
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))
    session = create_session(api_client, owner, [destination["id"]])
    delivered_image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    pending_image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    Delivery.objects.filter(image_id=delivered_image["id"]).update(status="delivered", delivered_at=timezone.now())

    response = api_client.delete(destinations_url(owner, destination["id"]), **owner.auth)

    assert response.status_code == 204
    assert response.content == b""
    assert api_client.get(destinations_url(owner), **owner.auth).json() == []
    patched = api_client.patch(destinations_url(owner, destination["id"]), {}, format="json", **owner.auth)
    assert (patched.status_code, patched.json()["code"]) == (404, "NOT_FOUND")
    delivered = Delivery.objects.get(image_id=delivered_image["id"])
    pending = Delivery.objects.get(image_id=pending_image["id"])
    assert (delivered.status, delivered.last_error) == ("delivered", "")
    assert (pending.status, pending.last_error) == ("failed", "destination deleted")
    status = api_client.get(f"/api/v1/upload-sessions/{session['id']}/delivery-status", **owner.auth).json()
    assert [image["deliveries"][0]["status"] for image in status["images"]] == ["delivered", "failed"]
    assert webhook_receiver.requests == []


# --- test endpoint ----------------------------------------------------------------------------------


def test_the_test_endpoint_reports_success_with_the_receivers_status(api_client, owner, webhook_receiver):
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))

    response = api_client.post(destinations_url(owner, destination["id"], "test"), **owner.auth)

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "status": 200,
        "message": f"Test image delivered to {webhook_receiver.url}/hook.",
    }
    [request] = webhook_receiver.wait_for_requests(1)
    assert signed_with(request, WEBHOOK_SECRET)


def test_the_test_endpoint_reports_failure_with_status_and_error(api_client, owner, webhook_receiver):
    webhook_receiver.respond = lambda request: 500
    destination = create_destination(api_client, owner, "webhook", webhook_config(webhook_receiver))

    response = api_client.post(destinations_url(owner, destination["id"], "test"), **owner.auth)

    assert response.status_code == 200
    assert response.json() == {
        "success": False,
        "status": 500,
        "message": "Test delivery failed.",
        "error": "HTTP 500 from the webhook",
    }
    listed = api_client.get(destinations_url(owner), **owner.auth).json()
    assert listed[0]["lastError"] == "HTTP 500 from the webhook"
    assert len(webhook_receiver.requests) == 1  # once, no retries


def test_a_refused_s3_secret_flags_needs_reconnect_until_the_secret_is_fixed(api_client, owner, seaweedfs_server):
    bucket = seaweedfs_server.create_bucket()
    config = seaweedfs_server.destination_config(bucket, secretKey="wrong-secret-key")
    destination = create_destination(api_client, owner, "s3", config)
    url = destinations_url(owner, destination["id"])

    refused = api_client.post(f"{url}/test", **owner.auth).json()
    flagged = api_client.get(destinations_url(owner), **owner.auth).json()[0]
    api_client.patch(url, {"config": {"secretKey": S3_SECRET}}, format="json", **owner.auth)
    accepted = api_client.post(f"{url}/test", **owner.auth).json()
    cleared = api_client.get(destinations_url(owner), **owner.auth).json()[0]

    assert refused["success"] is False
    assert refused["status"] == 403
    assert refused["error"].startswith("S3 SignatureDoesNotMatch:")
    assert (flagged["needsReconnect"], flagged["lastError"]) == (True, refused["error"])
    assert accepted["success"] is True, accepted
    assert (cleared["needsReconnect"], cleared["lastError"]) == (False, None)
    [key] = seaweedfs_server.objects(bucket)
    assert key.startswith("apertur-test/")


def test_an_s3_endpoint_that_redirects_is_reported_once_per_attempt_and_retried_later(api_client, owner):
    endpoint = FixedAnswerServer(307, {"Location": "http://127.0.0.1:9/media/"})
    try:
        destination = create_destination(
            api_client,
            owner,
            "s3",
            {"endpoint": endpoint.url, "bucket": "media", "accessKey": "key-id", "secretKey": S3_SECRET},
        )
        tested = api_client.post(destinations_url(owner, destination["id"], "test"), **owner.auth)
        session = create_session(api_client, owner, [destination["id"]])
        image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
        delivery_execute(delivery_id=str(Delivery.objects.get(image_id=image["id"]).pk))
    finally:
        endpoint.stop()

    message = (
        "the S3 endpoint redirected (HTTP 307), and redirects are not followed; set the bucket's region and endpoint"
    )
    assert tested.status_code == 200, tested.content
    assert tested.json() == {"success": False, "status": 307, "message": "Test delivery failed.", "error": message}
    assert [request.split(" ")[0] for request in endpoint.requests] == ["PUT", "PUT"]  # the test, then the delivery
    delivery = Delivery.objects.get(image_id=image["id"])
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, message)
    assert delivery.next_retry_at is not None
    [listed] = api_client.get(destinations_url(owner), **owner.auth).json()
    assert listed["lastError"] == message


# --- end to end -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_an_upload_is_delivered_to_a_webhook_and_an_s3_bucket_with_identical_bytes(
    worker, api_client, webhook_receiver, moto_server
):
    persona = make_persona("owner")
    bucket = moto_server.create_bucket()
    webhook = create_destination(api_client, persona, "webhook", webhook_config(webhook_receiver, format="binary"))
    s3 = create_destination(
        api_client,
        persona,
        "s3",
        moto_server.destination_config(bucket, pathTemplate="{tag:album}/{session_id}/{index}_{filename}"),
    )
    session = create_session(api_client, persona, [webhook["id"], s3["id"]], tags=["album:summer"])
    data = noisy_jpeg()

    image = upload_image(api_client, session["id"], data, name="beach.jpg")

    [request] = webhook_receiver.wait_for_requests(1)
    assert request.body == data
    assert request.header("X-Aptr-Image-Id") == image["id"]
    assert signed_with(request, WEBHOOK_SECRET)
    wait_until(lambda: Delivery.objects.filter(image_id=image["id"], status="delivered").count() == 2)
    key = f"summer/{session['id']}/0_beach.jpg"
    assert moto_server.objects(bucket) == {key: data}
    assert hashlib.sha256(data).hexdigest() == image["sha256"]
    s3_delivery = Delivery.objects.get(image_id=image["id"], destination_id=s3["id"])
    assert s3_delivery.remote_reference == f"s3://{bucket}/{key}"
    assert s3_delivery.attempts == 1
    status = api_client.get(f"/api/v1/upload-sessions/{session['id']}/delivery-status", **persona.auth).json()
    assert {delivery["status"] for delivery in status["images"][0]["deliveries"]} == {"delivered"}


def test_a_patch_replaces_custom_headers_whole_so_a_header_can_be_removed(api_client, owner):
    created = create_destination(
        api_client,
        owner,
        "webhook",
        {
            "url": "https://hooks.example.test/in",
            "secret": "header-secret",
            "customHeaders": {"X-Team": "claims", "Authorization": "Bearer old-token"},
        },
    )
    url = f"/api/v1/projects/{owner.project.pk}/destinations/{created['id']}"

    kept_one = api_client.patch(url, {"config": {"customHeaders": {"X-Team": "claims"}}}, format="json", **owner.auth)
    cleared = api_client.patch(url, {"config": {"customHeaders": None}}, format="json", **owner.auth)

    assert kept_one.status_code == 200
    assert kept_one.json()["config"]["customHeaders"] == {"X-Team": "claims"}
    assert cleared.status_code == 200
    assert "customHeaders" not in cleared.json()["config"]
    assert cleared.json()["config"]["secret"] == "••••cret"  # untouched by either patch
