"""The shapes of the session endpoints' documents for the OpenAPI schema (docs/api.md "OpenAPI"), field for field as
sessions_app/documents.py writes them. Used only to describe; nothing is validated or rendered through them."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from apertur.api.schema import error
from projects.models import ALL_MIME_TYPES, ApiKey
from sessions_app import qr
from sessions_app.activity import UploadStatus
from sessions_app.models import UploadSession

SESSION_STATUSES = UploadSession.Status.values
ENVS = ApiKey.Env.values


class SessionDestinationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    name = serializers.CharField()


class QrParamsSerializer(serializers.Serializer):
    format = serializers.CharField()
    size = serializers.CharField()
    style = serializers.CharField()
    fg = serializers.CharField()
    bg = serializers.CharField()
    borderSize = serializers.CharField()
    borderColor = serializers.CharField()


class QrSpecsSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    formats = serializers.ListField(child=serializers.ChoiceField(choices=list(qr.CONTENT_TYPES)))
    params = QrParamsSerializer()


class CreatedSessionSerializer(serializers.Serializer):
    """The 201 body of POST /api/v1/upload-sessions (docs/api.md "Creating a session")."""

    id = serializers.CharField(help_text="`sess_<ULID>`")
    uuid = serializers.CharField(help_text="The same as `id`.")
    upload_url = serializers.URLField()
    qr_url = serializers.URLField()
    qr_specs = QrSpecsSerializer()
    destinations = SessionDestinationSerializer(many=True)
    long_polling = serializers.BooleanField()
    expires_at = serializers.DateTimeField()
    password_protected = serializers.BooleanField()
    env = serializers.ChoiceField(choices=ENVS)
    status = serializers.ChoiceField(choices=SESSION_STATUSES)
    tags = serializers.ListField(child=serializers.CharField())
    max_images = serializers.IntegerField()


class SessionSerializer(serializers.Serializer):
    """GET /api/v1/upload/{id}/session and the PATCH answer (docs/api.md "Reading a session")."""

    id = serializers.CharField()
    status = serializers.ChoiceField(choices=SESSION_STATUSES)
    expiresAt = serializers.DateTimeField()
    tags = serializers.ListField(child=serializers.CharField())
    imagesPerSession = serializers.IntegerField()
    effectiveMaxImages = serializers.IntegerField()
    effectiveAllowedMimeTypes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_MIME_TYPES))
    effectiveMaxImageDimension = serializers.IntegerField(allow_null=True)
    effectiveMaxImageSizeMb = serializers.IntegerField()
    imagesCount = serializers.IntegerField()
    password_protected = serializers.BooleanField()
    serverPublicKey = serializers.CharField(allow_null=True, help_text="PEM")
    e2eEnabled = serializers.BooleanField()
    e2ePublicKey = serializers.CharField(allow_null=True)
    e2eDowngraded = serializers.BooleanField()


class SessionRowSerializer(serializers.Serializer):
    """One row of GET /api/v1/sessions and /api/v1/sessions/recent (docs/api.md "Listing sessions")."""

    id = serializers.CharField()
    createdAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=SESSION_STATUSES)
    projectId = serializers.UUIDField()
    projectName = serializers.CharField()
    imagesCount = serializers.IntegerField()
    imagesDelivered = serializers.IntegerField()
    imagesFailed = serializers.IntegerField()
    destinationsCount = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField())
    longPollingEnabled = serializers.BooleanField()
    label = serializers.CharField(allow_blank=True)
    env = serializers.ChoiceField(choices=ENVS)


class PageSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    page = serializers.IntegerField()
    pageSize = serializers.IntegerField()
    totalPages = serializers.IntegerField()


class SessionPageSerializer(PageSerializer):
    data = SessionRowSerializer(many=True)


class DestinationCountSerializer(serializers.Serializer):
    type = serializers.CharField()
    count = serializers.IntegerField()


class UploadRowSerializer(serializers.Serializer):
    """One row of GET /api/v1/uploads and /api/v1/uploads/recent (docs/api.md "Uploads")."""

    id = serializers.CharField()
    filename = serializers.CharField()
    sizeBytes = serializers.IntegerField()
    mimeType = serializers.ChoiceField(choices=ALL_MIME_TYPES)
    source = serializers.CharField()
    isEncrypted = serializers.BooleanField()
    env = serializers.ChoiceField(choices=ENVS)
    createdAt = serializers.DateTimeField()
    sessionId = serializers.CharField()
    projectId = serializers.UUIDField()
    projectName = serializers.CharField()
    destinationsTotal = serializers.IntegerField()
    destinationsDelivered = serializers.IntegerField()
    destinationsFailed = serializers.IntegerField()
    destinationsBreakdown = DestinationCountSerializer(many=True)
    status = serializers.ChoiceField(choices=[str(status) for status in UploadStatus])


class UploadPageSerializer(PageSerializer):
    data = UploadRowSerializer(many=True)


class ProjectCountSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    sessions = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    """GET /api/v1/stats (docs/api.md "Stats")."""

    sessionsThisMonth = serializers.IntegerField()
    sessionsInRange = serializers.IntegerField()
    sessionsTotal = serializers.IntegerField()
    imagesUploaded = serializers.IntegerField()
    imagesDelivered = serializers.IntegerField()
    deliverySuccessRate = serializers.FloatField(help_text="A percentage, one decimal.")
    totalProjects = serializers.IntegerField()
    activeKeys = serializers.IntegerField()
    topProjects = ProjectCountSerializer(many=True)


class ServerKeySerializer(serializers.Serializer):
    publicKey = serializers.CharField(help_text="PEM")


class AcceptedImageSerializer(serializers.Serializer):
    """The 201 body of POST /api/v1/upload/{id}/images (docs/api.md "Uploading images")."""

    id = serializers.CharField(help_text="`img_<ULID>`")
    image_index = serializers.IntegerField()
    filename = serializers.CharField()
    mime_type = serializers.ChoiceField(choices=ALL_MIME_TYPES)
    size_bytes = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    sha256 = serializers.CharField()
    destinations = serializers.IntegerField(help_text="The number of deliveries made for the image.")
    long_polling = serializers.BooleanField()


class UploadFormSerializer(serializers.Serializer):
    """The multipart upload (docs/api.md "Uploading images")."""

    file = serializers.FileField(help_text="The image; with `X-Aptr-Encrypted: default`, the JSON envelope.")
    source = serializers.RegexField(r"^[a-z0-9_-]{1,64}$", required=False, help_text="Default `camera`.")


class EncryptedUploadSerializer(serializers.Serializer):
    """The encrypted envelope as a JSON body (docs/api.md "Encrypted uploads")."""

    encryptedKey = serializers.CharField(help_text="base64: the AES-256 key wrapped with RSA-OAEP (SHA-256)")
    iv = serializers.CharField(help_text="base64 of 12 bytes")
    encryptedData = serializers.CharField(help_text="base64: the AES-256-GCM ciphertext and its 16-byte tag")
    algorithm = serializers.ChoiceField(choices=["RSA-OAEP+AES-256-GCM"], required=False)
    filename = serializers.CharField(required=False)
    source = serializers.RegexField(r"^[a-z0-9_-]{1,64}$", required=False)
    mimeType = serializers.CharField(required=False, help_text="Ignored: the real format decides.")


class PasswordCheckSerializer(serializers.Serializer):
    valid = serializers.BooleanField()


class CompletedSessionSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=SESSION_STATUSES)
    imagesCount = serializers.IntegerField()


class PullQueueImageSerializer(serializers.Serializer):
    id = serializers.CharField()
    filename = serializers.CharField()
    size_bytes = serializers.IntegerField()
    mime_type = serializers.ChoiceField(choices=ALL_MIME_TYPES)
    source = serializers.CharField()
    created_at = serializers.DateTimeField()
    image_index = serializers.IntegerField()


class PullQueueSerializer(serializers.Serializer):
    """GET /api/v1/upload-sessions/{id}/poll (docs/api.md "Client variant")."""

    images = PullQueueImageSerializer(many=True)


class LeasedImageSerializer(serializers.Serializer):
    """The 200 body of the held poll (docs/api.md "Held variant")."""

    image_id = serializers.CharField()
    image_index = serializers.IntegerField()
    filename = serializers.CharField()
    mime_type = serializers.ChoiceField(choices=ALL_MIME_TYPES)
    size_bytes = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    download_url = serializers.URLField()
    leased_until = serializers.DateTimeField()


class AcknowledgedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["acknowledged"])


# --- responses shared by several operations ----------------------------------------------------------

IMAGE_BYTES = {
    (200, mime_type): OpenApiResponse(
        OpenApiTypes.BINARY,
        description="The bytes as uploaded: `Content-Type` the image's `mime_type`, `Content-Disposition: attachment`.",
    )
    for mime_type in ALL_MIME_TYPES
}
NOT_LONG_POLLING = (400, "VALIDATION_ERROR")  # docs/api.md "Pull delivery": a session without long polling
IMAGE_GONE = {(410, "application/json"): error(410, "IMAGE_NO_LONGER_STAGED", reason="Deleted after retention.")}


class ServerSentEventSerializer(serializers.Serializer):
    """One event of a `text/event-stream` answer (docs/api.md "Server-Sent Events"); `data` is JSON text."""

    id = serializers.CharField(required=False, help_text="`<milliseconds>-<n>`: send it back as `Last-Event-ID`.")
    event = serializers.ChoiceField(
        choices=[
            "connected",
            "image:ready",
            "image:delivering",
            "image:delivered",
            "image:failed",
            "session:completed",
        ],
        required=False,
    )
    data = serializers.CharField(required=False, help_text="The event's data, a JSON object.")
    retry = serializers.IntegerField(required=False, help_text="Reconnect after this many milliseconds.")


EVENT_STREAM = {
    (200, "text/event-stream"): OpenApiResponse(
        ServerSentEventSerializer,
        description=(
            'Server-Sent Events (docs/api.md "Server-Sent Events"): `retry: 3000`, then frames `id:` / `event:` / '
            "`data: <JSON>` (`connected`, `image:ready`, `image:delivering`, `image:delivered`, `image:failed`, "
            "`session:completed`), `: heartbeat` comments; closed after `session:completed`."
        ),
    ),
    204: OpenApiResponse(description="`Last-Event-ID` is at or after the session's end: nothing more will come."),
}
# Any value is taken: one that is not an event id (`<digits>-<digits>`) is ignored and the stream starts from now.
EVENT_STREAM_PARAMETERS = [
    OpenApiParameter(
        "Last-Event-ID",
        OpenApiTypes.ANY,
        OpenApiParameter.HEADER,
        description="Resume after this event id (`<ms>-<n>`); anything else is ignored.",
    ),
    OpenApiParameter("lastEventId", OpenApiTypes.ANY, description="The same, for clients that cannot set headers."),
]
ENCRYPTED_HEADER = OpenApiParameter(
    "X-Aptr-Encrypted",
    str,
    OpenApiParameter.HEADER,
    enum=["default"],
    description='`default`: the `file` part is the encrypted JSON envelope (docs/api.md "Encrypted uploads").',
)

CREATE_EXAMPLE = OpenApiExample(
    "A session for two destinations",
    value={
        "destination_ids": ["6f1c2a0e-8d4b-4c6e-9a57-3b2f1d0e9c8a"],
        "tags": ["order:42"],
        "expires_in_hours": 24,
        "max_images": 10,
        "label": "Order 42",
    },
    request_only=True,
)
CREATED_EXAMPLE = OpenApiExample(
    "Created",
    value={
        "id": "sess_01JDAW7K3R5V9X2Q4M6N8P0T1S",
        "uuid": "sess_01JDAW7K3R5V9X2Q4M6N8P0T1S",
        "upload_url": "https://photos.example.com/u/sess_01JDAW7K3R5V9X2Q4M6N8P0T1S",
        "qr_url": "https://photos.example.com/api/v1/upload-sessions/sess_01JDAW7K3R5V9X2Q4M6N8P0T1S/qr",
        "qr_specs": {
            "endpoint": "/api/v1/upload-sessions/sess_01JDAW7K3R5V9X2Q4M6N8P0T1S/qr",
            "formats": ["png", "svg", "jpeg"],
            "params": {
                "format": "png|svg|jpeg",
                "size": "64-2048 (pixels)",
                "style": "square|rounded",
                "fg": "hex colour",
                "bg": "hex colour",
                "borderSize": "0-20 (modules)",
                "borderColor": "hex colour",
            },
        },
        "destinations": [{"id": "6f1c2a0e-8d4b-4c6e-9a57-3b2f1d0e9c8a", "type": "s3", "name": "Production S3"}],
        "long_polling": False,
        "expires_at": "2026-11-30T09:37:05.431Z",
        "password_protected": False,
        "env": "live",
        "status": "pending",
        "tags": ["order:42"],
        "max_images": 10,
    },
    response_only=True,
    status_codes=["201"],
)
ACCEPTED_EXAMPLE = OpenApiExample(
    "Accepted",
    value={
        "id": "img_01JDAW9B2C4D6E8F0G1H3J5K7M",
        "image_index": 0,
        "filename": "photo.jpg",
        "mime_type": "image/jpeg",
        "size_bytes": 245000,
        "width": 4032,
        "height": 3024,
        "sha256": "88555ba8d2f4c6e0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7",
        "destinations": 2,
        "long_polling": False,
    },
    response_only=True,
    status_codes=["201"],
)
