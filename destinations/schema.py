"""The shapes of the destination endpoints' documents for the OpenAPI schema (docs/api.md "OpenAPI"), field for field
as destinations/documents.py writes them. Used only to describe."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers

from destinations.backends import BACKENDS

DESTINATION_TYPES = sorted(BACKENDS)


class DestinationSerializer(serializers.Serializer):
    """A destination (docs/api.md "Destinations"): `config` as sent, every secret masked."""

    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=DESTINATION_TYPES)
    name = serializers.CharField()
    config = serializers.DictField(help_text='The type\'s config (docs/api.md "Destination types"), secrets masked.')
    isActive = serializers.BooleanField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    lastDeliveryAt = serializers.DateTimeField(allow_null=True)
    lastError = serializers.CharField(allow_null=True)
    needsReconnect = serializers.BooleanField()


class DestinationTestResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    status = serializers.IntegerField(required=False, help_text="The HTTP status the destination answered with.")
    error = serializers.CharField(required=False, help_text="On failure only.")


class DestinationTypeSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=DESTINATION_TYPES)
    oauth = serializers.BooleanField()
    configured = serializers.BooleanField()
    connectUrl = serializers.URLField(required=False, help_text="OAuth types only.")
    redirectUri = serializers.URLField(required=False, help_text="OAuth types only.")


CREATE_EXAMPLE = OpenApiExample(
    "A webhook",
    value={
        "type": "webhook",
        "name": "Local receiver",
        "config": {"url": "https://hooks.example.com/apertur", "secret": "a long shared secret"},
    },
    request_only=True,
)
DESTINATION_EXAMPLE = OpenApiExample(
    "A webhook",
    value={
        "id": "6f1c2a0e-8d4b-4c6e-9a57-3b2f1d0e9c8a",
        "type": "webhook",
        "name": "Local receiver",
        "config": {"url": "https://hooks.example.com/apertur", "secret": "••••cret"},
        "isActive": True,
        "createdAt": "2026-11-29T09:37:05.431Z",
        "updatedAt": "2026-11-29T09:37:05.431Z",
        "lastDeliveryAt": None,
        "lastError": None,
        "needsReconnect": False,
    },
    response_only=True,
)
