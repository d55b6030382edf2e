"""The shapes of the delivery endpoints' documents for the OpenAPI schema (docs/api.md "OpenAPI"), field for field
as delivery/documents.py writes them. Used only to describe."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers

from delivery.models import Delivery, EventDelivery, EventWebhook
from sessions_app.schema import SESSION_STATUSES

DELIVERY_STATUSES = Delivery.Status.values


class DeliveryRowSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField()
    destination_id = serializers.UUIDField()
    destination_name = serializers.CharField()
    destination_type = serializers.CharField()
    status = serializers.ChoiceField(choices=DELIVERY_STATUSES)
    attempts = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(required=False, help_text="Once delivered.")
    next_retry_at = serializers.DateTimeField(required=False, help_text="While `pending`: when it is due.")
    last_error = serializers.CharField(required=False, help_text="When there is one.")


class PullStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["waiting", "leased", "acknowledged", "purged"])
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    leased_until = serializers.DateTimeField(allow_null=True)


class StatusImageSerializer(serializers.Serializer):
    image_id = serializers.CharField()
    image_index = serializers.IntegerField()
    filename = serializers.CharField()
    size_bytes = serializers.IntegerField()
    deliveries = DeliveryRowSerializer(many=True)
    pull = PullStateSerializer(required=False, help_text="Sessions with long polling only.")


class FileDestinationSerializer(serializers.Serializer):
    destination_id = serializers.UUIDField()
    type = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=DELIVERY_STATUSES)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(allow_null=True)


class StatusFileSerializer(serializers.Serializer):
    record_id = serializers.CharField()
    filename = serializers.CharField()
    size_bytes = serializers.IntegerField()
    destinations = FileDestinationSerializer(many=True)


class DeliveryStatusSerializer(serializers.Serializer):
    """GET …/delivery-status: the documented shape (`images`) and the official clients' (`files`)."""

    session_id = serializers.CharField()
    status = serializers.ChoiceField(choices=SESSION_STATUSES)
    images = StatusImageSerializer(many=True)
    files = StatusFileSerializer(many=True)
    lastChanged = serializers.DateTimeField()


class RetriedDeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=DELIVERY_STATUSES)
    attempts = serializers.IntegerField()


DELIVERY_STATUS_EXAMPLE = OpenApiExample(
    "One image, two destinations",
    value={
        "session_id": "sess_01JDAW7K3R5V9X2Q4M6N8P0T1S",
        "status": "uploading",
        "images": [
            {
                "image_id": "img_01JDAW9B2C4D6E8F0G1H3J5K7M",
                "image_index": 0,
                "filename": "a.jpg",
                "size_bytes": 245000,
                "deliveries": [
                    {
                        "delivery_id": "ba83444f-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                        "destination_id": "6f1c2a0e-8d4b-4c6e-9a57-3b2f1d0e9c8a",
                        "destination_name": "Production S3",
                        "destination_type": "s3",
                        "status": "delivered",
                        "attempts": 1,
                        "delivered_at": "2026-11-29T09:37:06.120Z",
                    },
                    {
                        "delivery_id": "3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a090",
                        "destination_id": "0b9e7c3a-2f4d-4e1b-8c6a-5d7f9e1a2b3c",
                        "destination_name": "My Webhook",
                        "destination_type": "webhook",
                        "status": "pending",
                        "attempts": 1,
                        "next_retry_at": "2026-11-29T09:37:11.120Z",
                        "last_error": "HTTP 503 from the webhook",
                    },
                ],
            }
        ],
        "files": [
            {
                "record_id": "img_01JDAW9B2C4D6E8F0G1H3J5K7M",
                "filename": "a.jpg",
                "size_bytes": 245000,
                "destinations": [
                    {
                        "destination_id": "6f1c2a0e-8d4b-4c6e-9a57-3b2f1d0e9c8a",
                        "type": "s3",
                        "name": "Production S3",
                        "status": "delivered",
                        "attempts": 1,
                        "last_error": None,
                    }
                ],
            }
        ],
        "lastChanged": "2026-11-29T09:37:06.120Z",
    },
    response_only=True,
)


# --- event webhooks (docs/api.md "Event webhooks"), field for field as delivery/event_webhooks_documents.py writes


class EventWebhookSerializer(serializers.Serializer):
    """A webhook as every endpoint but create shows it: without its secret."""

    id = serializers.UUIDField()
    projectId = serializers.UUIDField()
    url = serializers.CharField()
    signatureMethod = serializers.ChoiceField(choices=EventWebhook.SignatureMethod.values)
    topics = serializers.ListField(child=serializers.CharField())
    isActive = serializers.BooleanField()
    maxRetries = serializers.IntegerField()
    retryIntervals = serializers.ListField(child=serializers.IntegerField(), help_text="Seconds before each retry.")
    disableAfterFailures = serializers.IntegerField()
    consecutiveFailures = serializers.IntegerField()
    customHeaders = serializers.DictField(child=serializers.CharField(allow_blank=True))
    disabledAt = serializers.DateTimeField(allow_null=True)
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class CreatedEventWebhookSerializer(EventWebhookSerializer):
    """A webhook as the create answer shows it: with its `secret`, the only time it is shown."""

    secret = serializers.CharField(
        help_text="64 hex characters that sign every request: shown in this answer only (svix signs with its bytes)."
    )


class EventDeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    eventLogId = serializers.UUIDField()
    topic = serializers.CharField()
    status = serializers.ChoiceField(choices=EventDelivery.Status.values)
    attempts = serializers.IntegerField()
    responseCode = serializers.IntegerField(allow_null=True)
    responseBody = serializers.CharField(allow_null=True, help_text="The receiver's answer, truncated.")
    durationMs = serializers.IntegerField(allow_null=True)
    lastError = serializers.CharField(allow_null=True)
    nextRetryAt = serializers.DateTimeField(allow_null=True, help_text="While `retrying`: when it is due.")
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class EventDeliveriesPageSerializer(serializers.Serializer):
    deliveries = EventDeliverySerializer(many=True)
    total = serializers.IntegerField()
    page = serializers.IntegerField()
    limit = serializers.IntegerField()


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()


EVENT_WEBHOOK_CREATE_EXAMPLE = OpenApiExample(
    "Uploads, signed the svix way",
    value={
        "url": "https://hooks.example.com/apertur",
        "topics": ["project.upload.*", "project.session.completed"],
        "signatureMethod": "svix",
        "customHeaders": {"X-Team": "photos"},
    },
    request_only=True,
)
EVENT_WEBHOOK_EXAMPLE = {
    "id": "5d0c9b8a-7f6e-4d5c-9b4a-3f2e1d0c9b8a",
    "projectId": "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
    "url": "https://hooks.example.com/apertur",
    "signatureMethod": "svix",
    "topics": ["project.upload.*", "project.session.completed"],
    "isActive": True,
    "maxRetries": 5,
    "retryIntervals": [5, 30, 120, 600, 3600],
    "disableAfterFailures": 20,
    "consecutiveFailures": 0,
    "customHeaders": {"X-Team": "photos"},
    "disabledAt": None,
    "createdAt": "2026-11-29T09:37:05.431Z",
    "updatedAt": "2026-11-29T09:37:05.431Z",
}
EVENT_WEBHOOK_CREATED_EXAMPLE = OpenApiExample(
    "Created",
    value={**EVENT_WEBHOOK_EXAMPLE, "secret": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    response_only=True,
)
EVENT_WEBHOOK_UPDATE_EXAMPLE = OpenApiExample("Switch it back on", value={"isActive": True}, request_only=True)
EVENT_DELIVERIES_EXAMPLE = OpenApiExample(
    "One failed delivery",
    value={
        "deliveries": [
            {
                "id": "7e6d5c4b-3a29-4817-8f6e-5d4c3b2a1908",
                "eventLogId": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
                "topic": "project.upload.completed",
                "status": "failed",
                "attempts": 6,
                "responseCode": 503,
                "responseBody": "Service Unavailable",
                "durationMs": 112,
                "lastError": "HTTP 503 from the receiver",
                "nextRetryAt": None,
                "createdAt": "2026-11-29T09:37:05.431Z",
                "updatedAt": "2026-11-29T10:48:12.004Z",
            }
        ],
        "total": 1,
        "page": 1,
        "limit": 20,
    },
    response_only=True,
)
