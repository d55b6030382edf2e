"""Reads behind the event-webhook pages (delivery/pages.py): scoped to a project, a fixed number of queries
whatever the number of webhooks, never writing."""

from django.db.models import OuterRef, Subquery

from delivery.models import EventDelivery, EventWebhook
from projects.models import Project


def event_webhooks_with_last_delivery(*, project: Project) -> list[EventWebhook]:
    """The project's webhooks, oldest first, each with its newest delivery's `last_status`, `last_code`,
    `last_error` and `last_at` (None when it has none): one query."""
    newest = EventDelivery.objects.filter(webhook=OuterRef("pk")).order_by("-created_at", "-pk")
    return list(
        EventWebhook.objects.filter(project=project)
        .annotate(
            last_status=Subquery(newest.values("status")[:1]),
            last_code=Subquery(newest.values("response_code")[:1]),
            last_error=Subquery(newest.values("last_error")[:1]),
            last_at=Subquery(newest.values("updated_at")[:1]),
        )
        .order_by("created_at", "pk")
    )
