"""Delivery routes, included under /api/v1/ with the namespace `delivery` (docs/api.md "Endpoints")."""

from django.urls import path

from apertur.api.waiting import waiting_view
from delivery import api

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
]
