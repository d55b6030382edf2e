"""GET …/delivery-status (docs/api.md "Delivery status"): the exact document a polling client reads, and what one
read costs in queries."""

import json
import uuid
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from delivery.models import Delivery
from destinations.models import Destination
from projects.models import ApiKey
from sessions_app.models import Image, UploadSession
from tests.factories import Persona

SESSION_ID = "sess_01GOLDEN0000000000000000000"
MOMENT = datetime(2026, 11, 29, 12, 30, 15, 123456, tzinfo=UTC)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def destination(persona: Persona, number: int, *, type: str, name: str, deleted: bool = False) -> Destination:
    return Destination.objects.create(
        id=uuid.UUID(int=number),
        project=persona.project,
        type=type,
        name=name,
        deleted_at=MOMENT if deleted else None,
    )


def image(session: UploadSession, index: int, **fields) -> Image:
    return Image.objects.create(
        id=f"img_{index:026}",
        session=session,
        index=index,
        filename=f"IMG_{index:04}.jpg",
        mime_type="image/jpeg",
        extension="jpg",
        size_bytes=1_000_000 + index,
        width=4,
        height=3,
        sha256="0" * 64,
        staged_name=f"staging/{index}.jpg",
        **fields,
    )


def delivery(photo: Image, target: Destination, number: int, *, created_seconds: int, **fields) -> None:
    made = Delivery.objects.create(id=uuid.UUID(int=1000 + number), image=photo, destination=target, **fields)
    # created_at is set on insert; the order of an image's deliveries is the order they were made in.
    Delivery.objects.filter(pk=made.pk).update(created_at=MOMENT + timedelta(seconds=created_seconds))


def session_with_mixed_deliveries(persona: Persona) -> UploadSession:
    """Three destinations (one deleted since) and four photos: every delivery status, with and without a delivery
    time, a next try and an error, and every pull state."""
    webhook = destination(persona, 1, type="webhook", name="Claims backend")
    sftp = destination(persona, 2, type="sftp", name="Archive")
    gone = destination(persona, 3, type="dropbox", name="Old Dropbox", deleted=True)
    session = UploadSession.objects.create(
        id=SESSION_ID,
        project=persona.project,
        api_key=persona.api_key,
        long_polling=True,
        expires_at=FAR_FUTURE,
        max_images=10,
        allowed_mime_types=["image/jpeg"],
        status=UploadSession.Status.UPLOADING,
        last_changed_at=MOMENT,
    )
    session.destinations.set([webhook, sftp])
    waiting = image(session, 0, created_at=MOMENT)
    leased = image(session, 1, created_at=MOMENT, poll_leased_until=FAR_FUTURE)
    acknowledged = image(session, 2, created_at=MOMENT, acknowledged_at=MOMENT + timedelta(microseconds=999))
    purged = image(session, 3, created_at=MOMENT, staged_deleted_at=MOMENT, poll_leased_until=MOMENT)
    image(session, 4, created_at=MOMENT)  # no delivery at all

    delivered_at = MOMENT + timedelta(seconds=2, microseconds=5999)
    retry_at = MOMENT + timedelta(minutes=1)
    # Made out of order: the sftp delivery first, so the order shown is by creation, not by destination.
    delivery(waiting, sftp, 1, created_seconds=0, status="delivered", attempts=1, delivered_at=delivered_at)
    delivery(
        waiting,
        webhook,
        2,
        created_seconds=1,
        status="pending",
        attempts=2,
        next_retry_at=retry_at,
        last_error="HTTP 503 from the receiver",
    )
    delivery(waiting, gone, 3, created_seconds=2, status="failed", attempts=5, last_error="Destination deleted.")
    delivery(leased, webhook, 4, created_seconds=4, status="pending", attempts=0, next_retry_at=retry_at)
    delivery(leased, sftp, 5, created_seconds=3, status="delivering", attempts=1, next_retry_at=retry_at)
    delivery(acknowledged, webhook, 6, created_seconds=5, status="failed", attempts=3)
    delivery(acknowledged, sftp, 7, created_seconds=6, status="delivered", attempts=2)
    delivery(purged, webhook, 8, created_seconds=7, status="pending", attempts=0)
    return session


def test_delivery_status_document_is_exactly_the_documented_one(api_client, owner):
    session_with_mixed_deliveries(owner)

    response = api_client.get(f"/api/v1/upload-sessions/{SESSION_ID}/delivery-status", **owner.auth)

    assert response.status_code == 200
    assert json.loads(response.content) == EXPECTED
    assert response.content == json.dumps(EXPECTED, separators=(",", ":")).encode()


def test_one_delivery_status_read_costs_four_queries_whatever_the_number_of_photos(
    api_client, owner, django_assert_num_queries
):
    session_with_mixed_deliveries(owner)
    # Authentication records lastUsedAt at most once a minute: keep that one write out of the count.
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=timezone.now())

    # The key, the session, its photos, their deliveries with their destinations' names and types.
    with django_assert_num_queries(4):
        response = api_client.get(f"/api/v1/upload-sessions/{SESSION_ID}/delivery-status", **owner.auth)

    assert response.status_code == 200


# What the API answered for this session before its read was rewritten without model instances: the same data
# must keep giving the same bytes (key order, millisecond timestamps, nulls, keys left out).
EXPECTED = {
    "session_id": "sess_01GOLDEN0000000000000000000",
    "status": "uploading",
    "images": [
        {
            "image_id": "img_00000000000000000000000000",
            "image_index": 0,
            "filename": "IMG_0000.jpg",
            "size_bytes": 1000000,
            "deliveries": [
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003e9",
                    "destination_id": "00000000-0000-0000-0000-000000000002",
                    "destination_name": "Archive",
                    "destination_type": "sftp",
                    "status": "delivered",
                    "attempts": 1,
                    "delivered_at": "2026-11-29T12:30:17.129Z",
                },
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003ea",
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "destination_name": "Claims backend",
                    "destination_type": "webhook",
                    "status": "pending",
                    "attempts": 2,
                    "next_retry_at": "2026-11-29T12:31:15.123Z",
                    "last_error": "HTTP 503 from the receiver",
                },
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003eb",
                    "destination_id": "00000000-0000-0000-0000-000000000003",
                    "destination_name": "Old Dropbox",
                    "destination_type": "dropbox",
                    "status": "failed",
                    "attempts": 5,
                    "last_error": "Destination deleted.",
                },
            ],
            "pull": {"status": "waiting", "acknowledged_at": None, "leased_until": None},
        },
        {
            "image_id": "img_00000000000000000000000001",
            "image_index": 1,
            "filename": "IMG_0001.jpg",
            "size_bytes": 1000001,
            "deliveries": [
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003ed",
                    "destination_id": "00000000-0000-0000-0000-000000000002",
                    "destination_name": "Archive",
                    "destination_type": "sftp",
                    "status": "delivering",
                    "attempts": 1,
                },
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003ec",
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "destination_name": "Claims backend",
                    "destination_type": "webhook",
                    "status": "pending",
                    "attempts": 0,
                    "next_retry_at": "2026-11-29T12:31:15.123Z",
                },
            ],
            "pull": {"status": "leased", "acknowledged_at": None, "leased_until": "2099-01-01T00:00:00.000Z"},
        },
        {
            "image_id": "img_00000000000000000000000002",
            "image_index": 2,
            "filename": "IMG_0002.jpg",
            "size_bytes": 1000002,
            "deliveries": [
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003ee",
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "destination_name": "Claims backend",
                    "destination_type": "webhook",
                    "status": "failed",
                    "attempts": 3,
                },
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003ef",
                    "destination_id": "00000000-0000-0000-0000-000000000002",
                    "destination_name": "Archive",
                    "destination_type": "sftp",
                    "status": "delivered",
                    "attempts": 2,
                },
            ],
            "pull": {"status": "acknowledged", "acknowledged_at": "2026-11-29T12:30:15.124Z", "leased_until": None},
        },
        {
            "image_id": "img_00000000000000000000000003",
            "image_index": 3,
            "filename": "IMG_0003.jpg",
            "size_bytes": 1000003,
            "deliveries": [
                {
                    "delivery_id": "00000000-0000-0000-0000-0000000003f0",
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "destination_name": "Claims backend",
                    "destination_type": "webhook",
                    "status": "pending",
                    "attempts": 0,
                }
            ],
            "pull": {"status": "purged", "acknowledged_at": None, "leased_until": None},
        },
        {
            "image_id": "img_00000000000000000000000004",
            "image_index": 4,
            "filename": "IMG_0004.jpg",
            "size_bytes": 1000004,
            "deliveries": [],
            "pull": {"status": "waiting", "acknowledged_at": None, "leased_until": None},
        },
    ],
    "files": [
        {
            "record_id": "img_00000000000000000000000000",
            "filename": "IMG_0000.jpg",
            "size_bytes": 1000000,
            "destinations": [
                {
                    "destination_id": "00000000-0000-0000-0000-000000000002",
                    "type": "sftp",
                    "name": "Archive",
                    "status": "delivered",
                    "attempts": 1,
                    "last_error": None,
                },
                {
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "type": "webhook",
                    "name": "Claims backend",
                    "status": "pending",
                    "attempts": 2,
                    "last_error": "HTTP 503 from the receiver",
                },
                {
                    "destination_id": "00000000-0000-0000-0000-000000000003",
                    "type": "dropbox",
                    "name": "Old Dropbox",
                    "status": "failed",
                    "attempts": 5,
                    "last_error": "Destination deleted.",
                },
            ],
        },
        {
            "record_id": "img_00000000000000000000000001",
            "filename": "IMG_0001.jpg",
            "size_bytes": 1000001,
            "destinations": [
                {
                    "destination_id": "00000000-0000-0000-0000-000000000002",
                    "type": "sftp",
                    "name": "Archive",
                    "status": "delivering",
                    "attempts": 1,
                    "last_error": None,
                },
                {
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "type": "webhook",
                    "name": "Claims backend",
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                },
            ],
        },
        {
            "record_id": "img_00000000000000000000000002",
            "filename": "IMG_0002.jpg",
            "size_bytes": 1000002,
            "destinations": [
                {
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "type": "webhook",
                    "name": "Claims backend",
                    "status": "failed",
                    "attempts": 3,
                    "last_error": None,
                },
                {
                    "destination_id": "00000000-0000-0000-0000-000000000002",
                    "type": "sftp",
                    "name": "Archive",
                    "status": "delivered",
                    "attempts": 2,
                    "last_error": None,
                },
            ],
        },
        {
            "record_id": "img_00000000000000000000000003",
            "filename": "IMG_0003.jpg",
            "size_bytes": 1000003,
            "destinations": [
                {
                    "destination_id": "00000000-0000-0000-0000-000000000001",
                    "type": "webhook",
                    "name": "Claims backend",
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                }
            ],
        },
        {
            "record_id": "img_00000000000000000000000004",
            "filename": "IMG_0004.jpg",
            "size_bytes": 1000004,
            "destinations": [],
        },
    ],
    "lastChanged": "2026-11-29T12:30:15.123Z",
}
