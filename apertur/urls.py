from django.contrib import admin
from django.urls import path

from apertur.health import healthz
from destinations.api import DestinationDetailView, DestinationListView, DestinationTestView
from sessions_app import api as sessions_api

handler400 = "apertur.api.errors.handler400"
handler403 = "apertur.api.errors.handler403"
handler404 = "apertur.api.errors.handler404"
handler500 = "apertur.api.errors.handler500"

api_v1 = [
    path("upload-sessions", sessions_api.SessionCreateView.as_view()),
    path("upload-sessions/<str:session_id>/qr", sessions_api.SessionQrView.as_view()),
    path("upload-sessions/<str:session_id>", sessions_api.SessionUpdateView.as_view()),
    path("upload-sessions/<str:session_id>/delivery-status", sessions_api.DeliveryStatusView.as_view()),
    path(
        "upload-sessions/<str:session_id>/deliveries/<str:delivery_id>/retry",
        sessions_api.DeliveryRetryView.as_view(),
    ),
    path("sessions", sessions_api.SessionListView.as_view()),
    path("encryption/server-key", sessions_api.EncryptionKeyView.as_view()),
    path("encryption/key", sessions_api.EncryptionKeyView.as_view()),
    path("sessions/recent", sessions_api.RecentSessionsView.as_view()),
    path("upload/<str:session_id>/session", sessions_api.PublicSessionView.as_view()),
    path("upload/<str:session_id>/verify-password", sessions_api.VerifyPasswordView.as_view()),
    path("upload/<str:session_id>/images", sessions_api.ImageUploadView.as_view()),
    path("upload/<str:session_id>/complete", sessions_api.CompleteView.as_view()),
    path("projects/<str:project_id>/destinations", DestinationListView.as_view()),
    path("projects/<str:project_id>/destinations/<str:destination_id>", DestinationDetailView.as_view()),
    path("projects/<str:project_id>/destinations/<str:destination_id>/test", DestinationTestView.as_view()),
]

urlpatterns = [
    path("healthz", healthz),
    path("admin/", admin.site.urls),
    *[path(f"api/v1/{pattern.pattern}", pattern.callback) for pattern in api_v1],
]
