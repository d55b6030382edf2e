"""Staged bytes are deleted after the retention period, once no delivery needs them (docs/api.md "Delivery"); images
of long-polling sessions once acknowledged, or past the retention period unacknowledged (docs/api.md "Pull
delivery")."""

from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from delivery.models import Delivery
from delivery.services import delivery_execute
from sessions_app.models import Image
from sessions_app.services import images_purge_staged
from tests.delivery.test_engine import create_session_with_webhook, upload
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session, webhook_destination


def age(image_id: str, *, days: int, delivery_status: str) -> None:
    long_ago = timezone.now() - timedelta(days=days)
    Image.objects.filter(pk=image_id).update(created_at=long_ago)
    Delivery.objects.filter(image_id=image_id).update(status=delivery_status, updated_at=long_ago)


def test_old_images_whose_deliveries_are_done_lose_their_staged_bytes_and_cannot_be_retried(
    api_client, owner, settings
):
    settings.APERTUR_STAGING_RETENTION_DAYS = 7
    session_id, _ = create_session_with_webhook(api_client, owner, "https://example.test/hook")
    done, failed, in_flight, recent = (upload(api_client, session_id, image_bytes()).json()["id"] for _ in range(4))
    age(done, days=8, delivery_status="delivered")
    age(failed, days=8, delivery_status="failed")
    age(in_flight, days=8, delivery_status="pending")
    age(recent, days=6, delivery_status="delivered")

    assert images_purge_staged() == 2

    for image_id, kept in ((done, False), (failed, False), (in_flight, True), (recent, True)):
        image = Image.objects.get(pk=image_id)
        assert default_storage.exists(image.staged_name) is kept
        assert (image.staged_deleted_at is None) is kept
    failed_delivery = Delivery.objects.get(image_id=failed)
    response = api_client.post(
        f"/api/v1/upload-sessions/{session_id}/deliveries/{failed_delivery.pk}/retry", **owner.auth
    )
    assert response.status_code == 409
    assert response.json()["code"] == "IMAGE_NO_LONGER_STAGED"
    assert images_purge_staged() == 0


def test_a_delivery_whose_staged_bytes_are_gone_fails_at_once_with_a_clear_error(api_client, owner):
    session_id, _ = create_session_with_webhook(api_client, owner, "https://example.test/hook")
    image = Image.objects.get(pk=upload(api_client, session_id, image_bytes()).json()["id"])
    default_storage.delete(image.staged_name)

    delivery_execute(delivery_id=str(Delivery.objects.get(image=image).pk))

    delivery = Delivery.objects.get(image=image)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == "the staged image is no longer available"


def test_long_polling_images_stay_staged_until_acknowledged_or_past_the_retention_period(api_client, owner, settings):
    settings.APERTUR_STAGING_RETENTION_DAYS = 7
    session_id = create_session(api_client, owner)["id"]
    waiting, acknowledged, forgotten = (upload(api_client, session_id, image_bytes()).json()["id"] for _ in range(3))
    assert api_client.post(f"/api/v1/images/{acknowledged}/ack", **owner.auth).status_code == 200
    Image.objects.filter(pk=waiting).update(created_at=timezone.now() - timedelta(days=6))
    Image.objects.filter(pk=forgotten).update(created_at=timezone.now() - timedelta(days=8))

    assert images_purge_staged() == 2

    for image_id, kept in ((waiting, True), (acknowledged, False), (forgotten, False)):
        image = Image.objects.get(pk=image_id)
        assert default_storage.exists(image.staged_name) is kept
        assert (image.staged_deleted_at is None) is kept
    assert images_purge_staged() == 0


def test_an_acknowledged_image_keeps_its_bytes_while_a_delivery_may_still_need_them(api_client, owner, settings):
    settings.APERTUR_STAGING_RETENTION_DAYS = 7
    destination = webhook_destination(owner)
    session_id = create_session(api_client, owner, destination_ids=[str(destination.pk)])["id"]
    in_flight, recently_failed, long_failed = (
        upload(api_client, session_id, image_bytes()).json()["id"] for _ in range(3)
    )
    for image_id in (in_flight, recently_failed, long_failed):
        assert api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth).status_code == 200
    age(in_flight, days=8, delivery_status="pending")
    Delivery.objects.filter(image_id=recently_failed).update(status="failed", updated_at=timezone.now())
    age(long_failed, days=8, delivery_status="failed")

    assert images_purge_staged() == 1

    assert Image.objects.get(pk=long_failed).staged_deleted_at is not None
    assert Image.objects.filter(pk__in=[in_flight, recently_failed], staged_deleted_at__isnull=True).count() == 2
