"""The destination pages for signed-in users (destinations/pages.py), included at the site's root with the
namespace `destination-pages`. The callback's URL is what providers are told to redirect to
(docs/destinations.md "Connecting an OAuth destination"): keep it stable."""

from django.urls import path

from destinations import pages

app_name = "destination-pages"

urlpatterns = [
    path("projects/<str:project_id>/destinations", pages.destination_list, name="destination-list"),
    path("projects/<str:project_id>/destinations/new", pages.destination_new, name="destination-new"),
    path(
        "projects/<str:project_id>/destinations/<str:destination_id>/edit",
        pages.destination_edit,
        name="destination-edit",
    ),
    path(
        "projects/<str:project_id>/destinations/<str:destination_id>/test",
        pages.destination_test,
        name="destination-test",
    ),
    path(
        "projects/<str:project_id>/destinations/<str:destination_id>/active",
        pages.destination_active,
        name="destination-active",
    ),
    path(
        "projects/<str:project_id>/destinations/<str:destination_id>/delete",
        pages.destination_delete,
        name="destination-delete",
    ),
    path("destinations/oauth/<str:kind>/start", pages.oauth_start, name="oauth-start"),
    path("destinations/oauth/<str:kind>/callback", pages.oauth_callback, name="oauth-callback"),
    path(
        "destinations/oauth/<str:kind>/<str:destination_id>/disconnect",
        pages.oauth_disconnect,
        name="oauth-disconnect",
    ),
]
