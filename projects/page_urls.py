"""The project pages for signed-in users (projects/pages.py), included at the site's root."""

from django.urls import path

from projects import pages

app_name = "project-pages"

urlpatterns = [
    path("projects/new", pages.project_create, name="project-create"),
    path("projects/<str:project_id>/keys", pages.keys, name="keys"),
    path("projects/<str:project_id>/keys/<str:key_id>/edit", pages.key_edit, name="key-edit"),
    path("projects/<str:project_id>/keys/<str:key_id>/revoke", pages.key_revoke, name="key-revoke"),
    path(
        "projects/<str:project_id>/keys/<str:key_id>/signing-secret",
        pages.key_signing_secret,
        name="key-signing-secret",
    ),
]
