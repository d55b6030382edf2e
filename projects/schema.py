"""The shapes of the API-key endpoints' documents for the OpenAPI schema (docs/api.md "OpenAPI"), field for field as
projects/documents.py writes them. Used only to describe."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers

from projects.models import ALL_MIME_TYPES, ApiKey


class ApiKeySerializer(serializers.Serializer):
    """A key as every key endpoint shows it (docs/api.md "API keys")."""

    id = serializers.UUIDField()
    prefix = serializers.CharField()
    label = serializers.CharField(allow_blank=True)
    env = serializers.ChoiceField(choices=ApiKey.Env.values)
    isActive = serializers.BooleanField()
    lastUsedAt = serializers.DateTimeField(allow_null=True)
    maxImages = serializers.IntegerField(allow_null=True)
    allowedMimeTypes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_MIME_TYPES))
    maxImageDimension = serializers.IntegerField(allow_null=True)
    longPollingEnabled = serializers.BooleanField()
    defaultDestinations = serializers.ListField(child=serializers.UUIDField())
    allowedIps = serializers.ListField(child=serializers.CharField())
    allowedDomains = serializers.ListField(child=serializers.CharField())
    totpEnabled = serializers.BooleanField()
    clientCertEnabled = serializers.BooleanField()
    clientCertFingerprint = serializers.CharField(allow_null=True)
    signingEnabled = serializers.BooleanField()
    createdAt = serializers.DateTimeField()


class CreatedKeySerializer(serializers.Serializer):
    key = ApiKeySerializer()
    plainTextKey = serializers.CharField(help_text="The key itself: shown in this answer only.")


class SigningSecretSerializer(serializers.Serializer):
    key = ApiKeySerializer()
    signingSecret = serializers.CharField(help_text="64 hex characters: shown in this answer only.")


class KeyDestinationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    name = serializers.CharField()
    isActive = serializers.BooleanField()


class KeyDestinationsSerializer(serializers.Serializer):
    destinations = KeyDestinationSerializer(many=True)
    longPollingEnabled = serializers.BooleanField()


CREATE_EXAMPLE = OpenApiExample(
    "A key for the mobile app", value={"label": "Mobile app", "maxImages": 5, "env": "live"}, request_only=True
)
KEY_EXAMPLE = {
    "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "prefix": "aptr_live_AbCd",
    "label": "Mobile app",
    "env": "live",
    "isActive": True,
    "lastUsedAt": None,
    "maxImages": 5,
    "allowedMimeTypes": ["image/jpeg", "image/png", "image/webp", "image/heic"],
    "maxImageDimension": None,
    "longPollingEnabled": False,
    "defaultDestinations": [],
    "allowedIps": [],
    "allowedDomains": [],
    "totpEnabled": False,
    "clientCertEnabled": False,
    "clientCertFingerprint": None,
    "signingEnabled": False,
    "createdAt": "2026-11-29T09:37:05.431Z",
}
CREATED_EXAMPLE = OpenApiExample(
    "Created",
    value={"key": KEY_EXAMPLE, "plainTextKey": "aptr_live_AbCdEfGhIjKlMnOpQrStUvWxYz012345"},
    response_only=True,
    status_codes=["201"],
)
