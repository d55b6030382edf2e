"""Event-webhook endpoints (docs/api.md "Event webhooks"), for a key of the project, like the key endpoints.

Thin: parse, call a selector or service, render a document.
"""

import re
import unicodedata
from urllib.parse import urlsplit

import idna
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.fields import StrictBooleanField, StrictCharField
from apertur.api.schema import errors
from apertur.api.views import KeyApiView
from apertur.http import is_host_name_or_address
from delivery import event_webhooks as services
from delivery import event_webhooks_documents as documents
from delivery import event_webhooks_selectors as selectors
from delivery import schema as shapes
from delivery.models import EventWebhook
from delivery.project_events import TOPICS, WILDCARDS

LARGEST_STORED_INTEGER = 2**31 - 1
# RFC 9110 field-name token characters.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_HEADER_NAME_LENGTH = 100
# Set by Apertur on every request: signatures, their timestamps and ids, and the framing.
PROTECTED_HEADER_PREFIXES = ("x-apertur-", "svix-")
PROTECTED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
MAX_HEADERS = 20
MAX_TOPICS = 50  # entries of `topics`, repeats included: a few more than there are topics and wildcards
MAX_RETRY_INTERVAL_SECONDS = 86_400


def _has_control_character(text: str) -> bool:
    """Whether `text` holds a C0/C1 control character (NUL, CR, LF, tab, DEL, …)."""
    return any(unicodedata.category(character) == "Cc" for character in text)


def _requests_can_send_to(host: str) -> bool:
    """Whether requests can put `host` on the wire: it IDNA-encodes a non-ASCII host with the `idna` package (IDNA
    2008, UTS 46 mapping) and refuses the URL when that fails, as for `☃.net`, which Python's own IDNA 2003 codec
    takes (https://github.com/psf/requests/blob/main/src/requests/models.py, `_get_idna_encoded_host`)."""
    if host.isascii():
        return True
    try:
        idna.encode(host, uts46=True)
    except idna.IDNAError:
        return False
    return True


class WebhookUrlField(StrictCharField):
    default_error_messages = {
        "invalid": "must be an http or https URL with a host",
        "control": "must not contain control characters (line breaks, tabs, NUL)",
        "userinfo": "must not contain a user name or password (user:pass@)",
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=2000, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data) -> str:
        # Checked before anything reads it: urlsplit silently drops tabs and line breaks (bpo-43882).
        raw = super().to_internal_value(data)
        if _has_control_character(raw):
            self.fail("control")
        value = raw.strip()
        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
            parts.port  # noqa: B018 (a malformed port raises here)
        except ValueError:
            self.fail("invalid")
        if parts.scheme not in ("http", "https") or not host or not is_host_name_or_address(host):
            self.fail("invalid")
        if "@" in parts.netloc:
            self.fail("userinfo")
        if not _requests_can_send_to(host):
            self.fail("invalid")
        return value


class WebhookSettingsInput(serializers.Serializer):
    """The settings shared by create and PATCH, camelCase as the clients send them."""

    url = WebhookUrlField(required=False)
    topics = serializers.ListField(
        child=StrictCharField(max_length=64), allow_empty=False, max_length=MAX_TOPICS, required=False
    )
    signatureMethod = serializers.ChoiceField(choices=EventWebhook.SignatureMethod.values, required=False)
    maxRetries = serializers.IntegerField(min_value=0, max_value=20, required=False)
    retryIntervals = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_RETRY_INTERVAL_SECONDS),
        allow_empty=False,
        max_length=20,
        required=False,
    )
    disableAfterFailures = serializers.IntegerField(min_value=1, max_value=LARGEST_STORED_INTEGER, required=False)
    customHeaders = serializers.DictField(
        child=StrictCharField(max_length=1000, allow_blank=True, trim_whitespace=False), required=False
    )

    SERVICE_NAMES = {
        "url": "url",
        "topics": "topics",
        "signatureMethod": "signature_method",
        "isActive": "is_active",
        "maxRetries": "max_retries",
        "retryIntervals": "retry_intervals",
        "disableAfterFailures": "disable_after_failures",
        "customHeaders": "custom_headers",
    }

    def validate_topics(self, value: list[str]) -> list[str]:
        unknown = [topic for topic in value if topic not in TOPICS and topic not in WILDCARDS]
        if unknown:
            raise serializers.ValidationError(
                f"unknown topic {unknown[0]!r}; topics are {', '.join(TOPICS)}, or {', '.join(WILDCARDS)}"
            )
        return list(dict.fromkeys(value))

    def validate_customHeaders(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise serializers.ValidationError(f"at most {MAX_HEADERS} headers")
        seen: set[str] = set()
        for name, header in value.items():
            if len(name) > MAX_HEADER_NAME_LENGTH or not HEADER_NAME.match(name):
                raise serializers.ValidationError(
                    f"header names are 1 to {MAX_HEADER_NAME_LENGTH} token characters (RFC 9110), not {name[:120]!r}"
                )
            lowered = name.lower()
            if lowered in PROTECTED_HEADERS or lowered.startswith(PROTECTED_HEADER_PREFIXES):
                raise serializers.ValidationError(f"{name} is set by Apertur and cannot be overridden")
            if lowered in seen:
                raise serializers.ValidationError(f"{name} is given twice (header names ignore case)")
            seen.add(lowered)
            # Values go out as Latin-1; requests refuses one with leading whitespace or a line break, and a control
            # character or trailing whitespace would be smuggled or mangled: every attempt would fail.
            if (
                header != header.strip()
                or not header.isprintable()
                or _has_control_character(header)
                or max(map(ord, header), default=0) > 255
            ):
                raise serializers.ValidationError(
                    f"the value of {name} must be Latin-1 text without control characters or surrounding whitespace"
                )
        return value

    def service_arguments(self) -> dict:
        return {self.SERVICE_NAMES[name]: value for name, value in self.validated_data.items()}


class EventWebhookListView(KeyApiView):
    """`GET`, `POST /api/v1/projects/{projectId}/webhooks`."""

    class Input(WebhookSettingsInput):
        url = WebhookUrlField()
        topics = serializers.ListField(child=StrictCharField(max_length=64), allow_empty=False, max_length=MAX_TOPICS)

    @extend_schema(
        summary="List the project's event webhooks",
        responses={200: shapes.EventWebhookSerializer(many=True)},
    )
    def get(self, request: Request, project_id: str) -> Response:
        webhooks = selectors.event_webhooks_for_project(project=self.project_from_url(project_id))
        return Response([documents.event_webhook_document(webhook) for webhook in webhooks])

    @extend_schema(
        summary="Create an event webhook",
        request=Input,
        responses={201: shapes.CreatedEventWebhookSerializer, **errors((409, "WEBHOOK_LIMIT_REACHED"))},
        examples=[shapes.EVENT_WEBHOOK_CREATE_EXAMPLE, shapes.EVENT_WEBHOOK_CREATED_EXAMPLE],
    )
    def post(self, request: Request, project_id: str) -> Response:
        project = self.project_from_url(project_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        webhook, secret = services.event_webhook_create(project=project, **payload.service_arguments())
        return Response(documents.event_webhook_document(webhook, secret=secret), status=201)


class EventWebhookLookup:
    def webhook(self, project_id: str, webhook_id: str) -> EventWebhook:
        return selectors.event_webhook_for_project(project=self.project_from_url(project_id), webhook_id=webhook_id)


class EventWebhookDetailView(EventWebhookLookup, KeyApiView):
    """`PATCH`, `DELETE /api/v1/projects/{projectId}/webhooks/{webhookId}`."""

    class Input(WebhookSettingsInput):
        isActive = StrictBooleanField(required=False)

    @extend_schema(
        summary="Update an event webhook",
        request=Input,
        responses={200: shapes.EventWebhookSerializer},
        examples=[shapes.EVENT_WEBHOOK_UPDATE_EXAMPLE],
    )
    def patch(self, request: Request, project_id: str, webhook_id: str) -> Response:
        webhook = self.webhook(project_id, webhook_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        webhook = services.event_webhook_update(webhook=webhook, changes=payload.service_arguments())
        return Response(documents.event_webhook_document(webhook))

    @extend_schema(summary="Delete an event webhook and its deliveries", responses={204: None})
    def delete(self, request: Request, project_id: str, webhook_id: str) -> Response:
        services.event_webhook_delete(webhook=self.webhook(project_id, webhook_id))
        return Response(status=204)


class EventWebhookTestView(EventWebhookLookup, KeyApiView):
    """`POST …/webhooks/{webhookId}/test`: one signed test event, sent now; the message says how it went."""

    @extend_schema(
        summary="Send a test event to a webhook now",
        description="The answer is 200 whether or not the receiver took it; the message says which.",
        request=None,
        responses={200: shapes.MessageSerializer},
    )
    def post(self, request: Request, project_id: str, webhook_id: str) -> Response:
        message = services.event_webhook_test(webhook=self.webhook(project_id, webhook_id))
        return Response({"message": message})


class EventDeliveryListView(EventWebhookLookup, KeyApiView):
    """`GET …/webhooks/{webhookId}/deliveries?page=&limit=`: newest first."""

    class Input(serializers.Serializer):
        page = serializers.IntegerField(min_value=1, max_value=LARGEST_STORED_INTEGER, default=1)
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)

    @extend_schema(
        summary="A webhook's deliveries, newest first",
        parameters=[Input],
        responses={200: shapes.EventDeliveriesPageSerializer, **errors(400)},
        examples=[shapes.EVENT_DELIVERIES_EXAMPLE],
    )
    def get(self, request: Request, project_id: str, webhook_id: str) -> Response:
        webhook = self.webhook(project_id, webhook_id)
        params = self.Input(data=request.query_params)
        params.is_valid(raise_exception=True)
        page, limit = params.validated_data["page"], params.validated_data["limit"]
        deliveries, total = selectors.event_deliveries_page(webhook=webhook, offset=(page - 1) * limit, limit=limit)
        return Response(documents.event_deliveries_page_document(deliveries, total=total, page=page, limit=limit))


class EventDeliveryRetryView(EventWebhookLookup, KeyApiView):
    """`POST …/webhooks/{webhookId}/deliveries/{deliveryId}/retry`: a failed delivery again, fresh budget."""

    @extend_schema(
        summary="Retry a failed event delivery",
        request=None,
        responses={200: shapes.MessageSerializer, **errors((409, "NOT_FAILED", "WEBHOOK_INACTIVE"))},
    )
    def post(self, request: Request, project_id: str, webhook_id: str, delivery_id: str) -> Response:
        webhook = self.webhook(project_id, webhook_id)
        delivery = selectors.event_delivery_for_webhook(webhook=webhook, delivery_id=delivery_id)
        services.event_delivery_retry(delivery=delivery)
        return Response({"message": "The delivery is queued for another attempt."})
