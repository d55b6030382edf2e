"""Pull delivery's state changes (docs/api.md "Pull delivery"): leasing the next image to a held poll, and
acknowledging an image.

An image of a long-polling session waits in its session's pull queue until a client acknowledges it. The client
variant lists the queue and acknowledges what it took; the held variant leases one image at a time, so two
clients polling the same session never get the same image while its lease runs, and an image whose lease ran out
without an acknowledgement is offered again.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apertur.errors import AppError
from delivery.leases import database_now
from sessions_app.models import Image, UploadSession
from sessions_app.selectors import pull_queue_images
from sessions_app.status import SessionEvent, session_changed


def ensure_long_polling(*, session: UploadSession) -> None:
    """Only sessions created with long polling have a pull queue; asking another one is a mistake of the client's
    (400), not an empty queue that would keep it polling forever."""
    if not session.long_polling:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            "This session does not use long polling: its images go to its destinations and cannot be pulled.",
        )


def image_lease_next(*, session: UploadSession) -> Image | None:
    """Lease the session's oldest image that is unacknowledged, still staged and not leased (or whose lease ran
    out) for APERTUR_POLL_LEASE_SECONDS, and return it; None when there is none.

    Two polls at once never lease the same image: on PostgreSQL the row is locked and a concurrent poll skips it
    for the next one; on SQLite write transactions run one at a time (IMMEDIATE), so the second sees the lease.
    Leases are set and judged by the database's clock, as the deliveries' are.
    """
    queue = pull_queue_images(session=session)
    # A plain read first: a waiting poll looks again on every event of its session, and most looks find nothing;
    # they should not take SQLite's write lock each time.
    if not queue.exclude(poll_leased_until__gt=database_now()).exists():
        return None
    with transaction.atomic():
        now = database_now()
        image = queue.select_for_update(skip_locked=True).exclude(poll_leased_until__gt=now).order_by("index").first()
        if image is None:
            return None
        image.poll_leased_until = now + timedelta(seconds=settings.APERTUR_POLL_LEASE_SECONDS)
        Image.objects.filter(pk=image.pk).update(poll_leased_until=image.poll_leased_until)
    return image


def image_acknowledge(*, image: Image) -> Image:
    """The client has the image: it leaves the pull queue for good (and its staged bytes may be purged, see
    `services.images_purge_staged`). A second acknowledgement is 409 ALREADY_ACKNOWLEDGED; of two at once exactly
    one succeeds (the conditional UPDATE decides)."""
    with transaction.atomic():
        now = timezone.now()
        acknowledged = Image.objects.filter(pk=image.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=now, poll_leased_until=None
        )
        if not acknowledged:
            raise AppError(409, "ALREADY_ACKNOWLEDGED", "This image was already acknowledged.")
        image.acknowledged_at, image.poll_leased_until = now, None
        session_changed(session=image.session, event=SessionEvent.IMAGE_ACKNOWLEDGED, image_id=image.pk)
    return image
