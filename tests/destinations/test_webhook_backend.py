"""The webhook destination (docs/api.md "Webhook destination") against a real local HTTP receiver."""

import base64
import hashlib
import hmac
import json
import threading
import time
from urllib.parse import unquote

import pytest
from apertur_sdk.signature import verify_webhook_signature
from requests_toolbelt.multipart.decoder import MultipartDecoder
from standardwebhooks.webhooks import Webhook

from apertur import http as http_module
from apertur.deadlines import Deadline
from delivery.models import Delivery
from delivery.services import delivery_execute
from destinations.backends.base import AttemptContext, DeliveryError
from destinations.backends.webhook import WebhookBackend, WebhookConfig
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    UserHostContract,
    make_staged_image,
    rendered_path,
)
from tests.destinations.helpers import FixedAnswerServer, create_destination, create_session, upload_image
from tests.factories import noisy_jpeg
from tests.servers.s3 import free_port
from tests.servers.tarpit import TarpitServer
from tests.servers.webhook_receiver import LongAnswerServer, ReceivedRequest, WebhookReceiver
from tests.waiting import wait_until

SECRET = "receiver-shared-secret"
WHSEC_SECRET = "whsec_" + base64.b64encode(b"standard webhooks key bytes").decode()
FORMATS = ["multipart", "json_base64", "binary"]


def webhook_backend(url: str, **config) -> WebhookBackend:
    return WebhookBackend(WebhookConfig.model_validate({"url": url, "secret": SECRET, **config}))


def kept_webhook_backend(url: str, deadline: Deadline | None = None, **config) -> WebhookBackend:
    """As the delivery engine builds it: reusing this thread's kept connections."""
    context = AttemptContext(keep_connections=True, **({"deadline": deadline} if deadline else {}))
    return WebhookBackend(WebhookConfig.model_validate({"url": url, "secret": SECRET, **config}), context)


def image_part(request: ReceivedRequest) -> bytes:
    """The image bytes a receiver gets, whatever the format."""
    content_type = request.header("Content-Type")
    if content_type.startswith("multipart/form-data"):
        return multipart_parts(request)["image"].content
    if content_type == "application/json":
        return base64.b64decode(json.loads(request.body)["data"])
    return request.body


def multipart_parts(request: ReceivedRequest) -> dict:
    parts = {}
    for part in MultipartDecoder(request.body, request.header("Content-Type")).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        parts[name] = part
    return parts


def apertur_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTarget(ContractTarget):
    """A receiver that checks the signature with its own copy of the secret, as a real one would."""

    def __init__(self, receiver, format: str) -> None:
        self.receiver = receiver
        self.format = format
        receiver.respond = self.status_for

    def status_for(self, request: ReceivedRequest) -> int:
        if request.path == "/broken":
            return 500
        if request.header("X-Apertur-Signature") != apertur_signature(request.body):
            return 401
        return 200

    def backend(self) -> WebhookBackend:
        return webhook_backend(f"{self.receiver.url}/hook", format=self.format)

    def failing_backend(self) -> WebhookBackend:
        return webhook_backend(f"{self.receiver.url}/broken", format=self.format)

    def backend_with_refused_credentials(self) -> WebhookBackend:
        # A webhook's credential is its shared secret: a receiver that cannot verify the signature
        # answers 401/403, and the destination needs its secret fixed (needsReconnect).
        return webhook_backend(f"{self.receiver.url}/hook", format=self.format, secret="not-the-receivers-secret")

    def delivered(self) -> dict[str, bytes]:
        # Receivers deduplicate on X-Aptr-Delivery-Id (docs/api.md "Webhook destination"): that id is the
        # webhook's "path".
        return {
            request.header("X-Aptr-Delivery-Id"): image_part(request)
            for request in self.receiver.requests
            if self.status_for(request) == 200
        }

    def location(self, image, path: str) -> str:
        return image.delivery_id


class TestWebhookBackendContract(BackendContract, UserHostContract):
    @pytest.fixture(params=FORMATS)
    def target(self, request, webhook_receiver) -> WebhookTarget:
        return WebhookTarget(webhook_receiver, request.param)


# --- the three body formats -------------------------------------------------------------------------


def deliver_one(receiver, image=None, **config) -> ReceivedRequest:
    image = image or make_staged_image(noisy_jpeg((320, 240)))
    webhook_backend(f"{receiver.url}/hook", **config).deliver(image, rendered_path(image))
    [request] = receiver.wait_for_requests(1)
    return request


def test_multipart_carries_every_field_and_the_image_part(webhook_receiver):
    data = noisy_jpeg((320, 240))
    image = make_staged_image(data, tags=["order:A-17", "client:Acme Ltd", "team"])

    request = deliver_one(webhook_receiver, image, format="multipart")

    parts = multipart_parts(request)
    fields = {name: part.text for name, part in parts.items() if name != "image"}
    assert fields == {
        "session_id": image.session_id,
        "image_id": image.image_id,
        "image_index": "3",
        "filename": "photo.jpg",
        "mime_type": "image/jpeg",
        "size_bytes": str(len(data)),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": "camera",
        "tags": json.dumps(["order:A-17", "client:Acme Ltd", "team"]),
        "tag_order": "A-17",
        "tag_client": "Acme Ltd",
    }
    assert json.loads(fields["tags"]) == image.tags
    file_part = parts["image"]
    assert 'filename="photo.jpg"' in file_part.headers[b"Content-Disposition"].decode()
    assert file_part.headers[b"Content-Type"] == b"image/jpeg"
    assert file_part.content == data


def test_json_base64_body_has_the_documented_keys_and_the_data_decodes_to_the_original(webhook_receiver):
    data = noisy_jpeg((320, 240))
    image = make_staged_image(data)

    request = deliver_one(webhook_receiver, image, format="json_base64")

    assert request.header("Content-Type") == "application/json"
    body = json.loads(request.body)
    assert base64.b64decode(body.pop("data"), validate=True) == data
    assert body == {
        "session_id": image.session_id,
        "image_id": image.image_id,
        "image_index": 3,
        "filename": "photo.jpg",
        "mime_type": "image/jpeg",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": "camera",
        "tags": ["order:A-17", "team"],
    }


def test_json_base64_data_decodes_for_images_larger_than_one_encoding_chunk(webhook_receiver):
    data = noisy_jpeg((1600, 1200))
    assert len(data) > 3 * 16 * 1024 * 2  # several base64 chunks, not a multiple of 3

    request = deliver_one(webhook_receiver, make_staged_image(data), format="json_base64")

    assert base64.b64decode(json.loads(request.body)["data"], validate=True) == data


def test_binary_body_is_the_raw_bytes_with_the_image_content_type_and_metadata_in_headers(webhook_receiver):
    data = noisy_jpeg((320, 240))
    image = make_staged_image(data)

    request = deliver_one(webhook_receiver, image, format="binary")

    assert request.body == data
    assert request.header("Content-Type") == "image/jpeg"
    assert request.header("Content-Length") == str(len(data))
    assert request.header("X-Aptr-Session-Id") == image.session_id
    assert request.header("X-Aptr-Image-Id") == image.image_id
    assert request.header("X-Aptr-Image-Index") == "3"
    assert request.header("X-Aptr-Sha256") == hashlib.sha256(data).hexdigest()
    assert unquote(request.header("X-Aptr-Filename")) == "photo.jpg"
    assert json.loads(request.header("X-Aptr-Tags")) == ["order:A-17", "team"]


def test_a_non_ascii_filename_is_delivered_in_every_format(webhook_receiver):
    image = make_staged_image(noisy_jpeg((160, 120)), filename="照片 été.jpg")
    backend_for = {fmt: webhook_backend(f"{webhook_receiver.url}/hook", format=fmt) for fmt in FORMATS}

    for backend in backend_for.values():
        backend.deliver(image, rendered_path(image))

    multipart, json_base64, binary = webhook_receiver.wait_for_requests(3)
    assert multipart_parts(multipart)["filename"].text == "照片 été.jpg"
    assert json.loads(json_base64.body)["filename"] == "照片 été.jpg"
    assert unquote(binary.header("X-Aptr-Filename")) == "照片 été.jpg"


# --- signatures and headers -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_apertur_signature_headers_are_equal_and_sign_the_raw_body(webhook_receiver, fmt):
    request = deliver_one(webhook_receiver, format=fmt)

    assert request.header("X-Apertur-Signature") == request.header("X-Aptr-Signature")
    assert request.header("X-Apertur-Signature") == apertur_signature(request.body)


def test_json_base64_signature_verifies_with_the_official_sdk(webhook_receiver):

    request = deliver_one(webhook_receiver, format="json_base64")

    assert verify_webhook_signature(request.body.decode(), request.header("X-Apertur-Signature"), SECRET)
    assert not verify_webhook_signature(request.body.decode(), request.header("X-Apertur-Signature"), "other-secret")


@pytest.mark.parametrize(
    ("secret", "library_secret", "key"),
    [
        (SECRET, base64.b64encode(SECRET.encode()).decode(), SECRET.encode()),
        (WHSEC_SECRET, WHSEC_SECRET, b"standard webhooks key bytes"),
    ],
    ids=["plain-secret", "whsec-secret"],
)
def test_standard_webhooks_signature_verifies(webhook_receiver, secret, library_secret, key):
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend_for = {fmt: webhook_backend(f"{webhook_receiver.url}/hook", format=fmt, secret=secret) for fmt in FORMATS}
    for backend in backend_for.values():
        backend.deliver(image, rendered_path(image))

    multipart, json_base64, binary = webhook_receiver.wait_for_requests(3)

    # The reference library verifies text bodies (it decodes the body as UTF-8) …
    assert Webhook(library_secret).verify(json_base64.body, json_base64.headers)["data"]
    # … and the same formula holds over the raw bytes of the binary formats.
    for request in (multipart, binary):
        signed = f"{request.header('webhook-id')}.{request.header('webhook-timestamp')}.".encode() + request.body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert request.header("webhook-signature") == expected
    for request in (multipart, json_base64, binary):
        assert request.header("webhook-id") == image.delivery_id


def test_an_invalid_whsec_secret_is_refused_by_the_config():
    with pytest.raises(ValueError, match="whsec_"):
        WebhookConfig.model_validate({"url": "https://example.com/hook", "secret": "whsec_!!!!!!!!"})


def test_custom_headers_are_sent(webhook_receiver):
    request = deliver_one(webhook_receiver, customHeaders={"X-Team": "photo desk", "Authorization": "Bearer abc"})

    assert request.header("X-Team") == "photo desk"
    assert request.header("Authorization") == "Bearer abc"


def test_custom_headers_cannot_override_signature_headers_and_creation_answers_400(api_client, owner):
    response = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations",
        {
            "type": "webhook",
            "name": "hook",
            "config": {
                "url": "https://example.com/hook",
                "secret": SECRET,
                "customHeaders": {"X-Apertur-Signature": "sha256=forged"},
            },
        },
        format="json",
        **owner.auth,
    )

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["fields"] == {
        "config.customHeaders": ["X-Apertur-Signature is set by Apertur and cannot be overridden"]
    }


@pytest.mark.parametrize(
    "header",
    ["x-aptr-signature", "Webhook-Signature", "webhook-id", "webhook-timestamp", "X-Aptr-Delivery-Id", "Content-Type"],
)
def test_no_signature_or_identity_header_can_be_overridden_whatever_its_case(header):
    with pytest.raises(ValueError, match="cannot be overridden"):
        WebhookConfig.model_validate(
            {"url": "https://example.com/hook", "secret": SECRET, "customHeaders": {header: "forged"}}
        )


@pytest.mark.parametrize("header", [{"X Bad": "1"}, {"X-Bad": "line\r\nInjected: yes"}, {"X-Bad": "snow ☃"}])
def test_custom_headers_must_be_valid_http_headers(header):
    with pytest.raises(ValueError, match="not a valid HTTP header"):
        WebhookConfig.model_validate({"url": "https://example.com/hook", "secret": SECRET, "customHeaders": header})


def test_delivery_id_is_stable_across_retries_of_one_delivery(api_client, owner, webhook_receiver):
    statuses = iter([503, 200])
    webhook_receiver.respond = lambda request: next(statuses)
    destination = create_destination(
        api_client, owner, "webhook", {"url": f"{webhook_receiver.url}/hook", "secret": SECRET}
    )
    session = create_session(api_client, owner, [destination["id"]])
    image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    delivery = Delivery.objects.get(image_id=image["id"])

    delivery_execute(delivery_id=str(delivery.pk))
    Delivery.objects.filter(pk=delivery.pk).update(next_retry_at=delivery.created_at)  # the retry is due
    delivery_execute(delivery_id=str(delivery.pk))

    first, second = webhook_receiver.wait_for_requests(2)
    assert first.header("X-Aptr-Delivery-Id") == second.header("X-Aptr-Delivery-Id") == str(delivery.pk)
    assert first.header("webhook-id") == second.header("webhook-id") == str(delivery.pk)
    assert [first.header("X-Aptr-Attempt"), second.header("X-Aptr-Attempt")] == ["1", "2"]
    assert Delivery.objects.get(pk=delivery.pk).status == "delivered"


# --- failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_receiver_refusing_the_signature_flags_the_destination_for_reconnect(webhook_receiver, status):
    webhook_receiver.respond = lambda request: status
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webhook_backend(f"{webhook_receiver.url}/hook").deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.http_status == status


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_a_failed_attempt_and_is_not_followed(webhook_receiver, status):
    redirecting = FixedAnswerServer(status, {"Location": f"{webhook_receiver.url}/elsewhere"})
    image = make_staged_image(noisy_jpeg((160, 120)))
    try:
        with pytest.raises(DeliveryError) as raised:
            webhook_backend(f"{redirecting.url}/hook").deliver(image, rendered_path(image))
    finally:
        redirecting.stop()

    assert raised.value.http_status == status
    assert raised.value.message == f"HTTP {status} from the webhook (redirects are not followed)"
    assert redirecting.requests == ["POST /hook"]
    assert webhook_receiver.requests == []


def test_a_receiver_that_does_not_answer_in_time_is_a_failure_with_a_clear_message(webhook_receiver, settings):
    settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS = 0.3
    release = threading.Event()
    webhook_receiver.respond = lambda request: 200 if release.wait(timeout=30) else 500
    image = make_staged_image(noisy_jpeg((160, 120)))
    try:
        with pytest.raises(DeliveryError) as raised:
            webhook_backend(f"{webhook_receiver.url}/hook").deliver(image, rendered_path(image))
    finally:
        release.set()

    assert raised.value.message == "the webhook did not answer within 0.3 s"
    assert raised.value.permanent is False


def test_a_refused_connection_is_a_failure_with_a_clear_message():
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webhook_backend(f"http://127.0.0.1:{free_port()}/hook").deliver(image, rendered_path(image))

    assert raised.value.message.startswith("could not reach the webhook:")
    assert "Connection refused" in raised.value.message
    assert raised.value.permanent is False
    assert raised.value.http_status is None


# --- kept connections (docs/destinations.md "How attempts run") ----------------------------------------


def deliver_kept(url: str, deadline: Deadline | None = None) -> None:
    image = make_staged_image(noisy_jpeg((160, 120)))
    kept_webhook_backend(url, deadline).deliver(image, rendered_path(image))


def test_deliveries_run_by_one_worker_thread_reuse_one_connection(api_client, owner, webhook_receiver):
    destination = create_destination(
        api_client, owner, "webhook", {"url": f"{webhook_receiver.url}/hook", "secret": SECRET}
    )
    session = create_session(api_client, owner, [destination["id"]])
    images = [upload_image(api_client, session["id"], noisy_jpeg((160, 120))) for _ in range(3)]

    for image in images:
        delivery_execute(delivery_id=str(Delivery.objects.get(image_id=image["id"]).pk))

    assert len(webhook_receiver.wait_for_requests(3)) == 3
    assert webhook_receiver.connections == 1
    assert set(Delivery.objects.filter(image_id__in=[i["id"] for i in images]).values_list("status", flat=True)) == {
        "delivered"
    }


def test_a_kept_session_idle_too_long_is_replaced_by_a_new_connection(webhook_receiver, monkeypatch):
    deliver_kept(f"{webhook_receiver.url}/hook")
    deliver_kept(f"{webhook_receiver.url}/hook")
    later = time.monotonic() + http_module.KEPT_IDLE_SECONDS + 1
    monkeypatch.setattr(http_module, "monotonic", lambda: later)

    deliver_kept(f"{webhook_receiver.url}/hook")

    assert len(webhook_receiver.wait_for_requests(3)) == 3
    assert webhook_receiver.connections == 2


def test_a_destination_test_closes_its_connection(webhook_receiver):
    image = make_staged_image(noisy_jpeg((160, 120)))
    webhook_backend(f"{webhook_receiver.url}/hook").deliver(image, rendered_path(image))
    webhook_backend(f"{webhook_receiver.url}/hook").deliver(image, rendered_path(image))

    assert len(webhook_receiver.wait_for_requests(2)) == 2
    assert webhook_receiver.connections == 2


def test_a_cookie_a_receiver_sets_is_never_sent_again(webhook_receiver):
    webhook_receiver.answer_headers = {"Set-Cookie": "receiver-session=alice; Path=/"}
    other = WebhookReceiver().start()  # another destination on the same host (cookies ignore ports)
    try:
        deliver_kept(f"{webhook_receiver.url}/hook")
        deliver_kept(f"{webhook_receiver.url}/hook")
        deliver_kept(f"{other.url}/hook")
        [to_other] = other.wait_for_requests(1)
    finally:
        other.stop()

    first, again = webhook_receiver.wait_for_requests(2)
    assert [request.header("Cookie") for request in (first, again, to_other)] == [None, None, None]
    assert webhook_receiver.connections == 1


def test_a_kept_connection_whose_socket_the_deadline_shut_is_not_reused(webhook_receiver):
    # The deadline's timer fires after the attempt has handed its connection back (a late timer): the kept socket
    # is shut down while idle, and the next attempt must dial a new connection rather than fail on it.
    with Deadline(1.0) as deadline:
        deliver_kept(f"{webhook_receiver.url}/hook", deadline)
        deliver_kept(f"{webhook_receiver.url}/hook", deadline)  # on the kept connection
        wait_until(lambda: deadline.expired)

    deliver_kept(f"{webhook_receiver.url}/hook")

    assert len(webhook_receiver.wait_for_requests(3)) == 3
    assert webhook_receiver.connections == 2


def test_after_the_deadline_cut_a_request_on_a_kept_connection_the_next_attempt_succeeds_on_a_new_one():
    # The first request is answered at once and its connection kept; the answer to the second, on that connection,
    # comes one byte at a time (so no read times out) until the deadline shuts the socket; the third goes out on a
    # new connection and is answered at once.
    server = TarpitServer(mode="drip", interval=0.1, limit=20, quick=1)
    try:
        deliver_kept(f"{server.url}/hook")
        with Deadline(0.5) as deadline, pytest.raises(DeliveryError) as raised:
            deliver_kept(f"{server.url}/hook", deadline)
        deliver_kept(f"{server.url}/hook")
    finally:
        server.stop()

    assert deadline.expired
    assert not raised.value.permanent
    assert (server.accepted, server.connections) == (2, 1)


@pytest.mark.parametrize(
    ("declared", "withheld"),
    [(None, False), (256 * 1024 * 1024, False), (16, True)],
    ids=["endless chunked", "256 MiB", "short but withheld"],
)
def test_a_long_or_slow_answer_body_is_not_waited_for_and_its_connection_is_closed(declared, withheld):
    server = LongAnswerServer(declared=declared, withheld=withheld)
    started = time.monotonic()
    try:
        deliver_kept(f"{server.url}/hook")
        deliver_kept(f"{server.url}/hook")
    finally:
        server.stop()

    assert time.monotonic() - started < 5
    assert server.accepted == 2
