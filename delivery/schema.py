"""The shapes of the delivery endpoints' documents for the OpenAPI schema (docs/api.md "OpenAPI"), field for field
as delivery/documents.py writes them. Used only to describe."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers

from delivery.models import Delivery
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
