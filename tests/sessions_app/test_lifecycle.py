"""The session status lifecycle (docs/api.md "Status lifecycle"), derived from stored facts and driven by real
deliveries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apertur.broker import sweep_once
from delivery.models import Delivery
from sessions_app.models import UploadSession
from sessions_app.status import derive_status
from tests.delivery.test_engine import create_session_with_webhook, upload
from tests.factories import image_bytes, make_persona, wait_until


def status_of(api_client, persona, session_id: str) -> str:
    response = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **persona.auth)
    assert response.status_code == 200, response.content
    return response.json()["status"]


def test_session_goes_pending_uploading_then_completed_once_done_and_delivered(worker, api_client, webhook_receiver):
    persona = make_persona("owner")
    session_id, _ = create_session_with_webhook(api_client, persona, f"{webhook_receiver.url}/hook")
    assert status_of(api_client, persona, session_id) == "pending"

    assert upload(api_client, session_id, image_bytes()).status_code == 201
    assert status_of(api_client, persona, session_id) == "uploading"
    webhook_receiver.wait_for_requests(1)
    wait_until(lambda: Delivery.objects.filter(status="delivered").exists())
    assert status_of(api_client, persona, session_id) == "uploading"  # delivered, but the user is not done

    completed = api_client.post(f"/api/v1/upload/{session_id}/complete")
    assert completed.status_code == 200, completed.content
    assert completed.json()["status"] == "completed"
    assert status_of(api_client, persona, session_id) == "completed"
    assert upload(api_client, session_id, image_bytes()).json()["code"] == "SESSION_CLOSED"


def test_a_completed_session_whose_delivery_exhausts_its_retries_is_failed(
    worker, api_client, webhook_receiver, settings
):
    settings.APERTUR_RETRY_DELAYS = [0.1, 0.1]
    webhook_receiver.respond = lambda request: 500
    persona = make_persona("owner")
    session_id, _ = create_session_with_webhook(api_client, persona, f"{webhook_receiver.url}/hook")
    assert upload(api_client, session_id, image_bytes()).status_code == 201
    assert api_client.post(f"/api/v1/upload/{session_id}/complete").json()["status"] == "uploading"

    webhook_receiver.wait_for_requests(3)
    wait_until(lambda: UploadSession.objects.get(pk=session_id).status == "failed")
    assert status_of(api_client, persona, session_id) == "failed"


def test_reaching_max_images_closes_the_session_and_it_completes_when_delivered(worker, api_client, webhook_receiver):
    persona = make_persona("owner")
    session_id, _ = create_session_with_webhook(api_client, persona, f"{webhook_receiver.url}/hook")
    api_client.patch(f"/api/v1/upload-sessions/{session_id}", {"max_images": 2}, format="json", **persona.auth)
    for _ in range(2):
        assert upload(api_client, session_id, image_bytes()).status_code == 201
    assert upload(api_client, session_id, image_bytes()).json()["code"] == "SESSION_FULL"

    webhook_receiver.wait_for_requests(2)
    wait_until(lambda: UploadSession.objects.get(pk=session_id).status == "completed")
    session = UploadSession.objects.get(pk=session_id)
    assert session.close_reason == "full" and session.images_count == 2


def test_the_sweeper_expires_a_session_and_its_accepted_images_are_still_delivered(
    worker, api_client, webhook_receiver, settings
):
    settings.APERTUR_RETRY_DELAYS = [0.3] * 5
    persona = make_persona("owner")
    webhook_receiver.respond = lambda request: 503  # first attempts fail: delivery continues after expiry
    session_id, _ = create_session_with_webhook(api_client, persona, f"{webhook_receiver.url}/hook")
    assert upload(api_client, session_id, image_bytes()).status_code == 201
    webhook_receiver.wait_for_requests(1)

    UploadSession.objects.filter(pk=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    sweep_once()
    session = UploadSession.objects.get(pk=session_id)
    assert (session.status, session.close_reason) == ("expired", "expired")
    assert upload(api_client, session_id, image_bytes()).json()["code"] == "SESSION_EXPIRED"

    webhook_receiver.respond = lambda request: 200
    wait_until(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=20)
    assert status_of(api_client, persona, session_id) == "expired"


@pytest.mark.parametrize(
    ("closed", "reason", "images", "open_deliveries", "failed", "expected"),
    [
        (False, "", 0, 0, 0, "pending"),
        (False, "", 3, 2, 0, "uploading"),
        (True, "completed", 3, 1, 0, "uploading"),
        (True, "completed", 3, 0, 0, "completed"),
        (True, "full", 3, 0, 1, "failed"),
        (True, "completed", 0, 0, 0, "completed"),
        (True, "expired", 3, 1, 0, "expired"),
        (True, "expired", 0, 0, 0, "expired"),
    ],
)
def test_status_is_derived_from_closure_and_delivery_facts(closed, reason, images, open_deliveries, failed, expected):
    session = UploadSession(
        closed_at=timezone.now() if closed else None,
        close_reason=reason,
        images_count=images,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert derive_status(session, open_deliveries=open_deliveries, failed_deliveries=failed) == expected
