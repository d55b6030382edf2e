"""The JSON documents of the delivery endpoints, shaped from what the selectors fetched; no queries here."""

from datetime import datetime

from django.utils import timezone

from apertur.api.formats import iso
from delivery.models import Delivery
from delivery.selectors import DeliveryRow, ImageRow
from sessions_app.models import UploadSession
from sessions_app.status import displayed_status


def delivery_status_document(session: UploadSession, *, images: list[ImageRow]) -> dict:
    """GET …/delivery-status (docs/api.md "Delivery status"): the documented shape (`images`) and the official
    clients' shape (`files`) at once. `images` come from `selectors.images_with_deliveries`."""
    image_rows, file_rows = [], []
    now = timezone.now()
    for image in images:
        image_row = {
            "image_id": image.id,
            "image_index": image.index,
            "filename": image.filename,
            "size_bytes": image.size_bytes,
            "deliveries": [_delivery_row(delivery) for delivery in image.deliveries],
        }
        if session.long_polling:
            image_row["pull"] = _pull_state(image, now=now)
        image_rows.append(image_row)
        file_rows.append(
            {
                "record_id": image.id,
                "filename": image.filename,
                "size_bytes": image.size_bytes,
                "destinations": [
                    {
                        "destination_id": str(delivery.destination_id),
                        "type": delivery.destination_type,
                        "name": delivery.destination_name,
                        "status": delivery.status,
                        "attempts": delivery.attempts,
                        "last_error": delivery.last_error or None,
                    }
                    for delivery in image.deliveries
                ],
            }
        )
    return {
        "session_id": session.pk,
        "status": displayed_status(session),
        "images": image_rows,
        "files": file_rows,
        "lastChanged": iso(session.last_changed_at),
    }


def _pull_state(image: ImageRow, *, now: datetime) -> dict:
    """Where the image stands in the pull queue (docs/api.md "Pull delivery")."""
    if image.acknowledged_at is not None:
        status = "acknowledged"
    elif image.staged_deleted_at is not None:
        status = "purged"
    # Shown by this machine's clock; leases are judged by the database's (sessions_app/polling.py). A difference
    # of a few seconds only shows a lease ending a little early or late.
    elif image.poll_leased_until is not None and image.poll_leased_until > now:
        status = "leased"
    else:
        status = "waiting"
    return {
        "status": status,
        "acknowledged_at": iso(image.acknowledged_at),
        "leased_until": iso(image.poll_leased_until) if status == "leased" else None,
    }


def _delivery_row(delivery: DeliveryRow) -> dict:
    row = {
        "delivery_id": str(delivery.id),
        "destination_id": str(delivery.destination_id),
        "destination_name": delivery.destination_name,
        "destination_type": delivery.destination_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
    }
    if delivery.delivered_at:
        row["delivered_at"] = iso(delivery.delivered_at)
    if delivery.next_retry_at and delivery.status == Delivery.Status.PENDING:
        row["next_retry_at"] = iso(delivery.next_retry_at)
    if delivery.last_error:
        row["last_error"] = delivery.last_error
    return row


def delivery_retried_document(delivery: Delivery) -> dict:
    """The answer of POST …/deliveries/{deliveryId}/retry (docs/api.md "Retrying a delivery")."""
    return {"id": str(delivery.pk), "status": delivery.status, "attempts": delivery.attempts}
