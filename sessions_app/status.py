"""A session's status derived from stored facts (docs/api.md "Status lifecycle"), and `session_changed`, the one
place every change of a session's facts passes through.

It depends on models only, so the session services and the delivery engine both use it without importing each
other.
"""

from enum import StrEnum
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from apertur import events
from delivery.models import Delivery
from delivery.project_events import session_project_events
from sessions_app.models import UploadSession

Status = UploadSession.Status
CloseReason = UploadSession.CloseReason


class SessionEvent(StrEnum):
    """What happened to a session. Every event's data also carries the session's `status` after the change and
    `ended`: whether this change ended the session (closed, nothing left to deliver)."""

    SESSION_CREATED = "session.created"  # (no data)
    IMAGE_ACCEPTED = "image.accepted"  # image_id, index, filename, size_bytes, mime_type
    DELIVERY_STARTED = "delivery.started"  # delivery_id, image_id, destination_id, attempt
    DELIVERY_DELIVERED = "delivery.delivered"  # delivery_id, image_id, destination_id, destination_type
    DELIVERY_FAILED = "delivery.failed"  # delivery_id, image_id, destination_id, error, final
    DELIVERY_RETRIED = "delivery.retried"  # delivery_id, image_id, destination_id (a manual retry)
    IMAGE_ACKNOWLEDGED = "image.acknowledged"  # image_id (a pull client has the image)
    SESSION_CLOSED = "session.closed"  # reason: completed | full | expired
    SESSION_UPDATED = "session.updated"  # fields: the settings a PATCH changed (password included)


def derive_status(session: UploadSession, *, open_deliveries: int, failed_deliveries: int) -> str:
    """The one place that says what a session's status is."""
    if session.closed_at is None:
        return Status.UPLOADING if session.images_count else Status.PENDING
    if session.close_reason == CloseReason.EXPIRED:
        return Status.EXPIRED
    if open_deliveries:
        return Status.UPLOADING
    return Status.FAILED if failed_deliveries else Status.COMPLETED


def displayed_status(session: UploadSession) -> str:
    """The status a reader is shown. An open session past its expiry reads as expired: the sweeper closes it
    within seconds, and a read never writes."""
    if session.closed_at is None and session.expires_at <= timezone.now():
        return Status.EXPIRED
    return session.status


def session_status_refresh(session: UploadSession, **also: Any) -> tuple[str, bool]:
    """Recompute the status from the facts and store it, with the columns in `also`, in one UPDATE; call inside the
    transaction that changed them. Returns the status and whether the session had ended before this change.

    The session row is locked first: two deliveries finishing at once would otherwise each count the other as
    still open (READ COMMITTED) and neither would write `completed`. Lock order everywhere:
    delivery → attempt → destination → session.
    """
    locked = (
        UploadSession.objects.select_for_update()
        .only("closed_at", "close_reason", "images_count", "status", "ended_at")
        .get(pk=session.pk)
    )
    counts = Delivery.objects.filter(image__session_id=session.pk).aggregate(
        open=Count("id", filter=~Q(status__in=Delivery.TERMINAL)),
        failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
    )
    status = derive_status(locked, open_deliveries=counts["open"], failed_deliveries=counts["failed"])
    # Ended: closed and nothing left to deliver (an expired session's accepted images are still delivered). The
    # moment is kept, so live clients are told of the end once, when it happens (docs/api.md "Live events").
    ended = locked.closed_at is not None and not counts["open"]
    changes = dict(also)
    if status != locked.status:
        changes["status"] = status
    if ended and locked.ended_at is None:
        changes["ended_at"] = session.ended_at = timezone.now()
    elif not ended and locked.ended_at is not None:
        changes["ended_at"] = session.ended_at = None
    else:
        session.ended_at = locked.ended_at
    if changes:
        UploadSession.objects.filter(pk=session.pk).update(**changes)
    session.status = status
    return status, locked.ended_at is not None


# Events that move a delivery between two open states (pending → delivering): the counts `derive_status` reads
# cannot change, so neither can the status, and the session row needs no lock (docs/api.md "Status lifecycle"). The
# status such an event carries is the one the caller read with the delivery, in its transaction; a session expiring
# at that very moment announces `expired` in its own event.
_STATUS_UNCHANGED = frozenset({"delivery.started"})


def session_changed(*, session: UploadSession, event: SessionEvent, **data: Any) -> None:
    """Record that a session's facts changed: refresh its status, bump `last_changed_at`, and publish the event
    once the surrounding transaction commits, with the project events it makes for event webhooks (written in the
    same transaction: delivery/project_events.py). Call it once per change, inside the transaction that made it."""
    # No savepoint: an error here fails the caller's transaction, which must not commit a change left unannounced.
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        if event in _STATUS_UNCHANGED:
            UploadSession.objects.filter(pk=session.pk).update(last_changed_at=now)
            status, ended = session.status, False
        else:
            status, was_ended = session_status_refresh(session, last_changed_at=now)
            # `ended`: this change ended the session (it was not ended before, it is now).
            ended = session.ended_at is not None and not was_ended
        session.last_changed_at = now
        session_project_events(session=session, event=str(event), data=data, status=status, ended=ended)
        published = events.Event(
            session_id=session.pk, name=str(event), changed_at=now, data={**data, "status": status, "ended": ended}
        )
        transaction.on_commit(lambda: events.publish(published))
