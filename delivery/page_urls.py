"""The project pages of event webhooks (delivery/pages.py) and the project's overview (projects/overview.py),
included at the site's root."""

from django.urls import path

from delivery import pages
from projects.overview import overview

app_name = "delivery-pages"

webhook = "projects/<str:project_id>/webhooks/<str:webhook_id>"

urlpatterns = [
    path("projects/<str:project_id>", overview, name="overview"),
    path("projects/<str:project_id>/webhooks", pages.webhook_list, name="webhooks"),
    path(f"{webhook}/edit", pages.webhook_edit, name="webhook-edit"),
    path(f"{webhook}/active", pages.webhook_active, name="webhook-active"),
    path(f"{webhook}/delete", pages.webhook_delete, name="webhook-delete"),
    path(f"{webhook}/test", pages.webhook_test, name="webhook-test"),
    path(f"{webhook}/deliveries", pages.webhook_deliveries, name="webhook-deliveries"),
    path(f"{webhook}/deliveries/<str:delivery_id>/retry", pages.delivery_retry, name="delivery-retry"),
]
