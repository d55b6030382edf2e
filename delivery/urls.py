"""Delivery routes, included under /api/v1/ with the namespace `delivery` (docs/api.md "Endpoints")."""

from django.urls import path

from apertur.api.waiting import waiting_view
from delivery import api, event_webhooks_api

app_name = "delivery"

urlpatterns = [
    path(
        "upload-sessions/<str:session_id>/delivery-status",
        waiting_view(api.DeliveryStatusView.as_view()),
        name="session-delivery-status",
    ),
    path(
        "upload-sessions/<str:session_id>/deliveries/<str:delivery_id>/retry",
        api.DeliveryRetryView.as_view(),
        name="delivery-retry",
    ),
    path("projects/<str:project_id>/webhooks", event_webhooks_api.EventWebhookListView.as_view(), name="webhook-list"),
    path(
        "projects/<str:project_id>/webhooks/<str:webhook_id>",
        event_webhooks_api.EventWebhookDetailView.as_view(),
        name="webhook-detail",
    ),
    path(
        "projects/<str:project_id>/webhooks/<str:webhook_id>/test",
        event_webhooks_api.EventWebhookTestView.as_view(),
        name="webhook-test",
    ),
    path(
        "projects/<str:project_id>/webhooks/<str:webhook_id>/deliveries",
        event_webhooks_api.EventDeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "projects/<str:project_id>/webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/retry",
        event_webhooks_api.EventDeliveryRetryView.as_view(),
        name="webhook-delivery-retry",
    ),
]
