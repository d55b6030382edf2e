"""The delivery engine end to end: upload → outbox → worker → webhook, retries on the schedule, manual retry."""

from datetime import timedelta

import redis
from django.utils import timezone

from delivery.actors import deliver
from delivery.models import Delivery, DeliveryAttempt
from delivery.services import deliveries_sweep
from destinations.services import destination_create
from sessions_app.models import UploadSession
from tests.factories import image_bytes, make_persona, wait_until

SHRUNK_SCHEDULE = [0.3, 0.6, 0.9, 1.2, 1.5]


def create_session_with_webhook(api_client, persona, url: str) -> tuple[str, str]:
    destination = destination_create(
        project=persona.project, type="webhook", name="receiver", config={"url": url, "secret": "s3cret-value"}
    )
    response = api_client.post(
        "/api/v1/upload-sessions", {"destination_ids": [str(destination.pk)]}, format="json", **persona.auth
    )
    assert response.status_code == 201, response.content
    return response.json()["id"], str(destination.pk)


def upload(api_client, session_id: str, data: bytes, name: str = "photo.jpg"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return api_client.post(
        f"/api/v1/upload/{session_id}/images",
        {"file": SimpleUploadedFile(name, data, "image/jpeg")},
        format="multipart",
    )


def test_uploaded_image_is_delivered_once_and_status_shows_it(worker, api_client, webhook_receiver):
    persona = make_persona("owner")
    session_id, destination_id = create_session_with_webhook(api_client, persona, f"{webhook_receiver.url}/hook")

    response = upload(api_client, session_id, image_bytes())
    assert response.status_code == 201, response.content

    [request] = webhook_receiver.wait_for_requests(1)
    assert request.header("X-Aptr-Image-Id") == response.json()["id"]
    delivery = wait_until(lambda: Delivery.objects.filter(status="delivered").first())
    assert delivery.attempts == 1
    status = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **persona.auth).json()
    assert status["images"][0]["deliveries"][0]["status"] == "delivered"
    assert status["files"][0]["destinations"][0]["destination_id"] == destination_id
    assert len(webhook_receiver.requests) == 1


def test_failing_receiver_is_retried_on_the_schedule_then_failed_and_manual_retry_delivers(
    worker, api_client, webhook_receiver, settings
):
    settings.APERTUR_RETRY_DELAYS = SHRUNK_SCHEDULE
    webhook_receiver.respond = lambda request: 503
    persona = make_persona("owner")
    session_id, _ = create_session_with_webhook(api_client, persona, f"{webhook_receiver.url}/hook")

    assert upload(api_client, session_id, image_bytes()).status_code == 201
    webhook_receiver.wait_for_requests(6)
    delivery = wait_until(lambda: Delivery.objects.filter(status="failed").first())

    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [attempt.number for attempt in attempts] == [1, 2, 3, 4, 5, 6]
    assert all(attempt.outcome == "failed" and attempt.http_status == 503 for attempt in attempts)
    for previous, following, delay in zip(attempts[:-1], attempts[1:], SHRUNK_SCHEDULE, strict=True):
        gap = following.started_at - previous.finished_at
        assert gap >= timedelta(seconds=delay), (previous.number, gap, delay)
    assert [request.header("X-Aptr-Attempt") for request in webhook_receiver.requests] == list("123456")
    assert delivery.last_error == "HTTP 503 from the webhook"
    assert UploadSession.objects.get(pk=session_id).status == "uploading"  # still open, not complete

    webhook_receiver.respond = lambda request: 200
    response = api_client.post(f"/api/v1/upload-sessions/{session_id}/deliveries/{delivery.pk}/retry", **persona.auth)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "pending"
    webhook_receiver.wait_for_requests(7)
    delivery = wait_until(lambda: Delivery.objects.filter(pk=delivery.pk, status="delivered").first())
    assert delivery.attempts == 1
    delivery_ids = {request.header("X-Aptr-Delivery-Id") for request in webhook_receiver.requests}
    assert delivery_ids == {str(delivery.pk)}


def test_an_upload_succeeds_while_the_broker_is_down_and_the_sweeper_sends_it_later(
    api_client, owner, monkeypatch, django_capture_on_commit_callbacks
):
    session_id, _ = create_session_with_webhook(api_client, owner, "https://example.test/hook")

    rung = []

    def broker_down(*args, **kwargs):
        rung.append(args)
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver, "send", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api_client, session_id, image_bytes())

    assert response.status_code == 201, response.content  # committed, so the client must not be told otherwise
    assert len(rung) == 1
    delivery = Delivery.objects.get()
    assert delivery.status == "pending"

    sent = []
    monkeypatch.setattr(deliver, "send", sent.append)
    Delivery.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    assert deliveries_sweep() == 1
    assert sent == [str(delivery.pk)]
