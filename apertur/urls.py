"""Every route of the site. Each app names its API routes in its own urls.py, included here under api/v1/ with
the app's label as namespace: `reverse("sessions_app:session-create")`, `reverse("delivery:delivery-retry")`,
`reverse("destinations:destination-list")`, `reverse("projects:key-list")` (docs/api.md "Endpoints")."""

from django.contrib import admin
from django.urls import include, path

from apertur.health import healthz
from apertur.openapi import DocsView, SchemaView
from apertur.pages import home
from sessions_app.pages import done_form, password_form, upload_page, upload_page_slash

handler400 = "apertur.api.errors.handler400"
handler403 = "apertur.api.errors.handler403"
handler404 = "apertur.api.errors.handler404"
handler500 = "apertur.api.errors.handler500"

urlpatterns = [
    path("", home, name="home"),
    path("u/<str:session_id>", upload_page, name="upload-page"),
    path("u/<str:session_id>/", upload_page_slash),
    path("u/<str:session_id>/password", password_form, name="upload-page-password"),
    path("u/<str:session_id>/done", done_form, name="upload-page-done"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("projects.page_urls")),
    path("api/schema/", SchemaView.as_view(), name="openapi-schema"),
    path("api/docs/", DocsView.as_view(), name="openapi-docs"),
    path("api/v1/", include("sessions_app.urls")),
    path("api/v1/", include("delivery.urls")),
    path("api/v1/", include("destinations.urls")),
    path("", include("destinations.page_urls")),
    path("", include("delivery.page_urls")),
    path("", include("sessions_app.dashboard_urls")),
    path("api/v1/", include("projects.urls")),
]
