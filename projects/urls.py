"""API-key routes, included under /api/v1/ with the namespace `projects` (docs/api.md "Endpoints")."""

from django.urls import path

from projects import api

app_name = "projects"

urlpatterns = [
    path("projects/<str:project_id>/keys", api.KeyListView.as_view(), name="key-list"),
    path("projects/<str:project_id>/keys/<str:key_id>", api.KeyDetailView.as_view(), name="key-detail"),
    path(
        "projects/<str:project_id>/keys/<str:key_id>/signing-secret",
        api.KeySigningSecretView.as_view(),
        name="key-signing-secret",
    ),
    path("keys/<str:key_id>/destinations", api.KeyDestinationsView.as_view(), name="key-destinations"),
]
