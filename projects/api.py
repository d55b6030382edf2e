"""API-key endpoints (docs/api.md "API keys"). Thin: parse, call a selector or service, render a document."""

import ipaddress
import re

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.authentication import host_of
from apertur.api.fields import StrictBooleanField, StrictCharField
from apertur.api.views import KeyApiView
from projects import documents, selectors, services
from projects import schema as shapes
from projects.models import ALL_MIME_TYPES, ApiKey

# The largest value an integer column holds on every supported database; beyond it the write fails (500).
LARGEST_STORED_INTEGER = 2**31 - 1
LIST_LIMIT = 100  # entries per allow-list or destination list: far beyond real use, short of abuse
HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")


class IpOrNetworkField(StrictCharField):
    """An `allowedIps` entry: an IPv4/IPv6 address or CIDR network (host bits allowed, as in `10.0.0.7/24`)."""

    default_error_messages = {"invalid": "must be an IP address or a CIDR network such as 203.0.113.0/24"}

    def to_internal_value(self, data) -> str:
        value = super().to_internal_value(data).strip()
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            self.fail("invalid")
        return value


class DomainField(StrictCharField):
    """An `allowedDomains` entry: a host name, `*.` and a host name, or a URL whose host is used (docs/api.md
    "Authentication")."""

    default_error_messages = {"invalid": "must be a host name (app.example.com), *.example.com, or a URL"}

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=253, **kwargs)

    def to_internal_value(self, data) -> str:
        value = super().to_internal_value(data).strip()
        host = host_of(value.removeprefix("*."))
        if not (HOST_NAME.match(host) or _is_ip_address(host)):
            self.fail("invalid")
        return value


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class KeySettingsInput(serializers.Serializer):
    """The settings shared by create and PATCH (docs/api.md "API keys"), camelCase as the clients send them."""

    label = StrictCharField(max_length=200, allow_blank=True, required=False)
    maxImages = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    allowedMimeTypes = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_MIME_TYPES), allow_empty=False, allow_null=True, required=False
    )
    maxImageDimension = serializers.IntegerField(
        min_value=1, max_value=LARGEST_STORED_INTEGER, allow_null=True, required=False
    )
    longPollingEnabled = StrictBooleanField(required=False)
    defaultDestinations = serializers.ListField(
        child=StrictCharField(max_length=64), max_length=LIST_LIMIT, required=False
    )
    allowedIps = serializers.ListField(child=IpOrNetworkField(max_length=64), max_length=LIST_LIMIT, required=False)
    allowedDomains = serializers.ListField(child=DomainField(), max_length=LIST_LIMIT, required=False)

    # camelCase field → the service's keyword
    SERVICE_NAMES = {
        "label": "label",
        "isActive": "is_active",
        "maxImages": "max_images",
        "allowedMimeTypes": "allowed_mime_types",
        "maxImageDimension": "max_image_dimension",
        "longPollingEnabled": "long_polling_enabled",
        "defaultDestinations": "default_destination_ids",
        "allowedIps": "allowed_ips",
        "allowedDomains": "allowed_domains",
        "env": "env",
    }

    def validate_maxImages(self, value: int | None) -> int | None:
        # Read at request time: the cap is a setting (docs/configuration.md).
        if value is not None and value > settings.APERTUR_MAX_IMAGES_CAP:
            raise serializers.ValidationError(f"must be at most {settings.APERTUR_MAX_IMAGES_CAP}")
        return value

    def validate_allowedMimeTypes(self, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))

    def service_arguments(self) -> dict:
        return {self.SERVICE_NAMES[name]: value for name, value in self.validated_data.items()}


class KeyListView(KeyApiView):
    """`GET`, `POST /api/v1/projects/{projectId}/keys`."""

    class Input(KeySettingsInput):
        label = StrictCharField(max_length=200, allow_blank=True)
        env = serializers.ChoiceField(choices=ApiKey.Env.values, default=ApiKey.Env.LIVE)

    @extend_schema(summary="List the project's API keys", responses={200: shapes.ApiKeySerializer(many=True)})
    def get(self, request: Request, project_id: str) -> Response:
        keys = selectors.keys_for_project(project=self.project_from_url(project_id))
        return Response([documents.api_key_document(api_key) for api_key in keys])

    @extend_schema(
        summary="Create an API key",
        request=Input,
        responses={201: shapes.CreatedKeySerializer},
        examples=[shapes.CREATE_EXAMPLE, shapes.CREATED_EXAMPLE],
    )
    def post(self, request: Request, project_id: str) -> Response:
        project = self.project_from_url(project_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key, plain = services.api_key_create(project=project, **payload.service_arguments())
        api_key = selectors.key_for_project(project=project, key_id=str(api_key.pk))
        return Response(documents.created_key_document(api_key, plain_key=plain), status=201)


class KeyDetailView(KeyApiView):
    """`PATCH`, `DELETE /api/v1/projects/{projectId}/keys/{keyId}`."""

    class Input(KeySettingsInput):
        isActive = StrictBooleanField(required=False)

    @extend_schema(summary="Update an API key", request=Input, responses={200: shapes.ApiKeySerializer})
    def patch(self, request: Request, project_id: str, key_id: str) -> Response:
        project = self.project_from_url(project_id)
        api_key = selectors.key_for_project(project=project, key_id=key_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        services.api_key_update(api_key=api_key, acting_key=request.auth, changes=payload.service_arguments())
        return Response(documents.api_key_document(selectors.key_for_project(project=project, key_id=key_id)))

    @extend_schema(summary="Delete an API key", responses={204: None})
    def delete(self, request: Request, project_id: str, key_id: str) -> Response:
        api_key = selectors.key_for_project(project=self.project_from_url(project_id), key_id=key_id)
        services.api_key_delete(api_key=api_key, acting_key=request.auth)
        return Response(status=204)


class KeyDestinationsView(KeyApiView):
    """`PUT /api/v1/keys/{keyId}/destinations`: the key's default destinations and long polling, in the snake_case
    body the official clients send."""

    class Input(serializers.Serializer):
        destination_ids = serializers.ListField(child=StrictCharField(max_length=64), max_length=LIST_LIMIT)
        long_polling_enabled = StrictBooleanField(required=False)

    @extend_schema(
        summary="Set an API key's default destinations",
        request=Input,
        responses={200: shapes.KeyDestinationsSerializer},
    )
    def put(self, request: Request, key_id: str) -> Response:
        api_key = selectors.key_for_project(project=self.project, key_id=key_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        services.api_key_destinations_set(
            api_key=api_key,
            destination_ids=payload.validated_data["destination_ids"],
            long_polling_enabled=payload.validated_data.get("long_polling_enabled"),
        )
        api_key = selectors.key_for_project(project=self.project, key_id=key_id)
        return Response(documents.key_destinations_document(api_key))


class KeySigningSecretView(KeyApiView):
    """`POST`, `DELETE /api/v1/projects/{projectId}/keys/{keyId}/signing-secret` (docs/api.md "Request signing")."""

    @extend_schema(
        summary="Give an API key a new signing secret",
        request=None,
        responses={201: shapes.SigningSecretSerializer},
    )
    def post(self, request: Request, project_id: str, key_id: str) -> Response:
        project = self.project_from_url(project_id)
        api_key = selectors.key_for_project(project=project, key_id=key_id)
        secret = services.api_key_signing_secret_create(api_key=api_key)
        return Response(documents.signing_secret_document(api_key, signing_secret=secret), status=201)

    @extend_schema(summary="Remove an API key's signing secret", responses={204: None})
    def delete(self, request: Request, project_id: str, key_id: str) -> Response:
        api_key = selectors.key_for_project(project=self.project_from_url(project_id), key_id=key_id)
        services.api_key_signing_secret_remove(api_key=api_key)
        return Response(status=204)
