"""The dashboard's session pages (sessions_app/dashboard.py), included at the site's root with the namespace
`session-pages`."""

from django.urls import path

from sessions_app import dashboard

app_name = "session-pages"

SESSION = "projects/<str:project_id>/sessions/<str:session_id>"

urlpatterns = [
    path("projects/<str:project_id>/sessions", dashboard.session_list, name="session-list"),
    path("projects/<str:project_id>/sessions/new", dashboard.session_new, name="session-new"),
    path(SESSION, dashboard.session_detail, name="session-detail"),
    path(f"{SESSION}/matrix", dashboard.session_matrix, name="session-matrix"),
    path(f"{SESSION}/qr", dashboard.session_qr, name="session-qr"),
    path(f"{SESSION}/close", dashboard.session_close, name="session-close"),
    path(f"{SESSION}/edit", dashboard.session_edit, name="session-edit"),
    path(f"{SESSION}/images/<str:image_id>/thumbnail", dashboard.image_thumbnail, name="image-thumbnail"),
    path(f"{SESSION}/deliveries/<str:delivery_id>/retry", dashboard.delivery_retry, name="delivery-retry"),
]
