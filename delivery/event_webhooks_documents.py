"""The JSON documents of the event-webhook endpoints (docs/api.md "Event webhooks"); no queries here."""

from apertur.api.formats import iso
from delivery.models import EventDelivery, EventWebhook


def event_webhook_document(webhook: EventWebhook, *, secret: str | None = None) -> dict:
    """A webhook as every endpoint shows it; only create passes its `secret`, the one answer that shows it."""
    document = {
        "id": str(webhook.pk),
        "projectId": str(webhook.project_id),
        "url": webhook.url,
        "signatureMethod": webhook.signature_method,
        "topics": webhook.topics,
        "isActive": webhook.is_active,
        "maxRetries": webhook.max_retries,
        "retryIntervals": webhook.retry_intervals,
        "disableAfterFailures": webhook.disable_after_failures,
        "consecutiveFailures": webhook.consecutive_failures,
        "customHeaders": webhook.custom_headers,
        "disabledAt": iso(webhook.disabled_at),
        "createdAt": iso(webhook.created_at),
        "updatedAt": iso(webhook.updated_at),
    }
    if secret is not None:
        document["secret"] = secret
    return document


def event_delivery_document(delivery: EventDelivery) -> dict:
    waiting = delivery.status == EventDelivery.Status.RETRYING and delivery.lease_expires_at is None
    return {
        "id": str(delivery.pk),
        "eventLogId": str(delivery.event_id),
        "topic": delivery.event.topic,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "responseCode": delivery.response_code,
        "responseBody": delivery.response_body or None,
        "durationMs": delivery.duration_ms,
        "lastError": delivery.last_error or None,
        "nextRetryAt": iso(delivery.next_retry_at) if waiting else None,
        "createdAt": iso(delivery.created_at),
        "updatedAt": iso(delivery.updated_at),
    }


def event_deliveries_page_document(deliveries: list[EventDelivery], *, total: int, page: int, limit: int) -> dict:
    return {
        "deliveries": [event_delivery_document(delivery) for delivery in deliveries],
        "total": total,
        "page": page,
        "limit": limit,
    }
