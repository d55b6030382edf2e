"""Reads of event webhooks and their deliveries: scoped to a project, models only, never writing."""

from apertur.errors import AppError
from apertur.ids import parse_uuid
from delivery.models import EventDelivery, EventWebhook
from projects.models import Project


def event_webhooks_for_project(*, project: Project) -> list[EventWebhook]:
    """The project's webhooks, oldest first."""
    return list(EventWebhook.objects.filter(project=project).order_by("created_at", "pk"))


def event_webhook_for_project(*, project: Project, webhook_id: str) -> EventWebhook:
    """A webhook of the project; another project's or a malformed id is 404."""
    key = parse_uuid(webhook_id)
    webhook = None if key is None else EventWebhook.objects.filter(project=project, pk=key).first()
    if webhook is None:
        raise AppError(404, "NOT_FOUND", "Webhook not found.")
    return webhook


def event_deliveries_page(*, webhook: EventWebhook, offset: int, limit: int) -> tuple[list[EventDelivery], int]:
    """One page of the webhook's deliveries, newest first, with their events, and how many there are."""
    deliveries = EventDelivery.objects.filter(webhook=webhook)
    rows = deliveries.select_related("event").order_by("-created_at", "-pk")[offset : offset + limit]
    return list(rows), deliveries.count()


def event_delivery_for_webhook(*, webhook: EventWebhook, delivery_id: str) -> EventDelivery:
    key = parse_uuid(delivery_id)
    delivery = None if key is None else EventDelivery.objects.filter(webhook=webhook, pk=key).first()
    if delivery is None:
        raise AppError(404, "NOT_FOUND", "Delivery not found.")
    return delivery
