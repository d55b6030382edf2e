"""Upload-session routes, included under /api/v1/ with the namespace `sessions_app` (docs/api.md "Endpoints")."""

from django.urls import path

from apertur.api.waiting import streaming_view, waiting_view
from sessions_app import activity_api, api, polling_api

app_name = "sessions_app"

urlpatterns = [
    # API-key endpoints
    path("upload-sessions", api.SessionCreateView.as_view(), name="session-create"),
    path("upload-sessions/<str:session_id>", api.SessionUpdateView.as_view(), name="session-detail"),
    path("upload-sessions/<str:session_id>/qr", api.SessionQrView.as_view(), name="session-qr"),
    path("sessions", api.SessionListView.as_view(), name="session-list"),
    path("sessions/recent", api.RecentSessionsView.as_view(), name="session-recent"),
    path("uploads", activity_api.UploadListView.as_view(), name="upload-list"),
    path("uploads/recent", activity_api.RecentUploadsView.as_view(), name="upload-recent"),
    path("stats", activity_api.StatsView.as_view(), name="stats"),
    path(
        "sessions/<str:session_id>/events",
        streaming_view(api.SessionEventStreamView.as_view()),
        name="session-events",
    ),
    # Pull delivery, client variant
    path("upload-sessions/<str:session_id>/poll", polling_api.SessionPollView.as_view(), name="session-poll"),
    path(
        "upload-sessions/<str:session_id>/images/<str:image_id>",
        polling_api.SessionImageView.as_view(),
        name="session-image",
    ),
    path(
        "upload-sessions/<str:session_id>/images/<str:image_id>/ack",
        polling_api.SessionImageAckView.as_view(),
        name="session-image-ack",
    ),
    # Pull delivery, held variant
    path("sessions/<str:session_id>/poll", waiting_view(polling_api.HeldPollView.as_view()), name="session-held-poll"),
    path("images/<str:image_id>/download", polling_api.ImageDownloadView.as_view(), name="image-download"),
    path("images/<str:image_id>/ack", polling_api.ImageAckView.as_view(), name="image-ack"),
    # One view on both documented paths (the official Python client calls server-key); a name for each.
    path("encryption/server-key", api.EncryptionKeyView.as_view(), name="encryption-server-key"),
    path("encryption/key", api.EncryptionKeyView.as_view(), name="encryption-key"),
    # The phone's endpoints: no key, the session id is the authorisation
    path("upload/<str:session_id>/session", api.PublicSessionView.as_view(), name="upload-session"),
    path("upload/<str:session_id>/verify-password", api.VerifyPasswordView.as_view(), name="upload-verify-password"),
    path("upload/<str:session_id>/images", api.ImageUploadView.as_view(), name="upload-images"),
    path("upload/<str:session_id>/complete", api.CompleteView.as_view(), name="upload-complete"),
    path("upload/<str:session_id>/events", streaming_view(api.PublicEventStreamView.as_view()), name="upload-events"),
]
