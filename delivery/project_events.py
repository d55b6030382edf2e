"""Project events for event webhooks (docs/api.md "Event webhooks"): the topics, and the recording of an event
with one delivery per matching active webhook, inside the transaction of the change it reports.

It depends on models only: `sessions_app.status.session_changed` (every change of a session) and the destination
outcome recorder (`needs_reconnect`) call it. Nothing is written for a project with no active webhook wanting the
topic. The rows are the outbox: the doorbell rings after commit, and the sweeper re-sends whatever it missed.
"""

from datetime import timedelta
from typing import Any

from django.db import connection, transaction

from delivery.leases import database_now
from delivery.models import Delivery, EventDelivery, EventLog, EventWebhook

SESSION_CREATED = "project.session.created"
SESSION_EXPIRED = "project.session.expired"
SESSION_COMPLETED = "project.session.completed"
UPLOAD_STARTED = "project.upload.started"
UPLOAD_COMPLETED = "project.upload.completed"
UPLOAD_FAILED = "project.upload.failed"
DESTINATION_NEEDS_RECONNECT = "project.destination.needs_reconnect"
TOPICS = (
    SESSION_CREATED,
    SESSION_EXPIRED,
    SESSION_COMPLETED,
    UPLOAD_STARTED,
    UPLOAD_COMPLETED,
    UPLOAD_FAILED,
    DESTINATION_NEEDS_RECONNECT,
)
# `project.upload.*` style: every topic under a prefix; `*` is every topic.
WILDCARDS = ("*", *sorted({topic.rsplit(".", 1)[0] + ".*" for topic in TOPICS}))


def topic_matches(patterns: list[str], topic: str) -> bool:
    return any(
        pattern in ("*", topic) or (pattern.endswith(".*") and topic.startswith(pattern[:-1])) for pattern in patterns
    )


def _enqueue(event_delivery_id: str) -> None:
    # Imported here: this module depends on models only when it is imported (session status imports it).
    from delivery.event_webhooks import event_delivery_enqueue

    event_delivery_enqueue(event_delivery_id)


def _wanted(*, project_id: Any, topic: str) -> list[EventWebhook]:
    """The project's active webhooks whose topics match.

    On PostgreSQL they are read FOR KEY SHARE: a webhook deleted meanwhile would otherwise fail this transaction's
    (deferred) foreign-key check at commit, and with it the upload or change that made the event. The lock lets other
    transactions read and update the webhook; only its deletion waits for this commit (and then takes the new
    deliveries with it). SQLite runs one write transaction at a time."""
    if connection.vendor == "postgresql":
        active = EventWebhook.objects.raw(
            'SELECT "id", "topics" FROM "delivery_eventwebhook" WHERE "project_id" = %s AND "is_active" FOR KEY SHARE',
            [project_id],
        )
    else:
        active = EventWebhook.objects.filter(project_id=project_id, is_active=True).only("id", "topics")
    return [webhook for webhook in active if topic_matches(webhook.topics, topic)]


def project_event_record(
    *, project_id: Any, topic: str, data: dict[str, Any], ordering_key: str = "", created_at=None
) -> EventLog | None:
    """Record one event and its deliveries in the current transaction; None when no active webhook wants it.

    Deliveries sharing an `ordering_key` (a session's id) are sent one at a time in the order of `created_at`."""
    webhooks = _wanted(project_id=project_id, topic=topic)
    if not webhooks:
        return None
    created_at = created_at or database_now()  # claims judge `next_retry_at` by the database's clock
    with transaction.atomic(savepoint=False):
        event = EventLog.objects.create(project_id=project_id, topic=topic, data=data, created_at=created_at)
        deliveries = EventDelivery.objects.bulk_create(
            [
                EventDelivery(
                    webhook=webhook,
                    event=event,
                    ordering_key=ordering_key,
                    next_retry_at=created_at,
                    enqueued_at=created_at,
                    created_at=created_at,
                )
                for webhook in webhooks
            ]
        )
        for delivery in deliveries:
            transaction.on_commit(lambda delivery_id=str(delivery.pk): _enqueue(delivery_id))
    return event


def session_project_events(*, session: Any, event: str, data: dict[str, Any], status: str, ended: bool) -> None:
    """The project events a change of a session makes, recorded in its transaction (called by `session_changed`,
    whose event names these are: sessions_app/status.py `SessionEvent`).

    `project.session.completed` is sent once when a session that was completed or filled (not expired) has ended:
    closed, every delivery final; its `status` says `completed` or `failed`. An expired session gets
    `project.session.expired` when it closes."""
    base = {"session_id": session.pk}
    found: list[tuple[str, dict[str, Any]]] = []
    if event == "session.created":
        found.append((SESSION_CREATED, {**base, "status": status, "label": session.label, "tags": session.tags}))
    elif event == "image.accepted":
        keys = ("image_id", "index", "filename", "size_bytes", "mime_type")
        found.append((UPLOAD_STARTED, {**base, **{("image_index" if k == "index" else k): data[k] for k in keys}}))
    elif (
        event == "delivery.delivered"
        and _wanted(project_id=session.project_id, topic=UPLOAD_COMPLETED)
        and not Delivery.objects.filter(image_id=data["image_id"]).exclude(status=Delivery.Status.DELIVERED).exists()
    ):
        found.append((UPLOAD_COMPLETED, {**base, "image_id": data["image_id"]}))
    elif event == "delivery.failed" and data.get("final"):
        keys = ("image_id", "delivery_id", "destination_id", "error")
        found.append((UPLOAD_FAILED, {**base, **{key: data[key] for key in keys}}))
    elif event == "session.closed" and data.get("reason") == "expired":
        found.append((SESSION_EXPIRED, {**base, "status": status, "images_count": session.images_count}))
    if ended and status in ("completed", "failed"):
        found.append((SESSION_COMPLETED, {**base, "status": status, "images_count": session.images_count}))
    if not found:
        return
    # The database's clock, read after this transaction locked the session (session_changed updated its row):
    # events of one session are stamped in the order they happened whichever machine made them.
    now = database_now()
    for offset, (topic, topic_data) in enumerate(found):
        # Two events of one change keep their order: their times differ by a microsecond.
        project_event_record(
            project_id=session.project_id,
            topic=topic,
            data=topic_data,
            ordering_key=session.pk,
            created_at=now + timedelta(microseconds=offset),
        )


def destination_needs_reconnect_event(*, destination: Any, error: str) -> None:
    """A destination has just been flagged as needing a reconnect (its credentials were refused)."""
    project_event_record(
        project_id=destination.project_id,
        topic=DESTINATION_NEEDS_RECONNECT,
        data={
            "destination_id": str(destination.pk),
            "destination_type": destination.type,
            "destination_name": destination.name,
            "error": error,
        },
    )
