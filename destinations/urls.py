"""Destination routes, included under /api/v1/ with the namespace `destinations` (docs/api.md "Endpoints")."""

from django.urls import path

from destinations import api

app_name = "destinations"

urlpatterns = [
    path("destination-types", api.DestinationTypesView.as_view(), name="destination-types"),
    path("projects/<str:project_id>/destinations", api.DestinationListView.as_view(), name="destination-list"),
    path(
        "projects/<str:project_id>/destinations/<str:destination_id>",
        api.DestinationDetailView.as_view(),
        name="destination-detail",
    ),
    path(
        "projects/<str:project_id>/destinations/<str:destination_id>/test",
        api.DestinationTestView.as_view(),
        name="destination-test",
    ),
]
