"""Every API route has a name (namespaced by its app) that reverses to the path clients call today."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from apertur.openapi import DocsView, SchemaView
from delivery import api as delivery_api
from delivery import event_webhooks_api
from destinations import api as destinations_api
from projects import api as projects_api
from sessions_app import activity_api, polling_api
from sessions_app import api as sessions_api

SESSION = "sess_01JABCDEFGHJKMNPQRSTVWXYZ0"
PROJECT = "6f1c2a0e-8d4b-4c6e-9a57-3b2f1d0e9c8a"
DESTINATION = "0b9e7c3a-2f4d-4e1b-8c6a-5d7f9e1a2b3c"
DELIVERY = "3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a090"
IMAGE = "img_01JABCDEFGHJKMNPQRSTVWXYZ0"
KEY = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
WEBHOOK = "7d6c5b4a-3f2e-4d1c-9b0a-8f7e6d5c4b3a"

# name, kwargs, the path clients call, the view that answers it
ROUTES = [
    ("sessions_app:session-create", {}, "/api/v1/upload-sessions", sessions_api.SessionCreateView),
    (
        "sessions_app:session-detail",
        {"session_id": SESSION},
        f"/api/v1/upload-sessions/{SESSION}",
        sessions_api.SessionUpdateView,
    ),
    (
        "sessions_app:session-qr",
        {"session_id": SESSION},
        f"/api/v1/upload-sessions/{SESSION}/qr",
        sessions_api.SessionQrView,
    ),
    (
        "sessions_app:session-poll",
        {"session_id": SESSION},
        f"/api/v1/upload-sessions/{SESSION}/poll",
        polling_api.SessionPollView,
    ),
    (
        "sessions_app:session-image",
        {"session_id": SESSION, "image_id": IMAGE},
        f"/api/v1/upload-sessions/{SESSION}/images/{IMAGE}",
        polling_api.SessionImageView,
    ),
    (
        "sessions_app:session-image-ack",
        {"session_id": SESSION, "image_id": IMAGE},
        f"/api/v1/upload-sessions/{SESSION}/images/{IMAGE}/ack",
        polling_api.SessionImageAckView,
    ),
    (
        "sessions_app:session-held-poll",
        {"session_id": SESSION},
        f"/api/v1/sessions/{SESSION}/poll",
        polling_api.HeldPollView,
    ),
    (
        "sessions_app:image-download",
        {"image_id": IMAGE},
        f"/api/v1/images/{IMAGE}/download",
        polling_api.ImageDownloadView,
    ),
    ("sessions_app:image-ack", {"image_id": IMAGE}, f"/api/v1/images/{IMAGE}/ack", polling_api.ImageAckView),
    ("sessions_app:session-list", {}, "/api/v1/sessions", sessions_api.SessionListView),
    ("sessions_app:session-recent", {}, "/api/v1/sessions/recent", sessions_api.RecentSessionsView),
    ("sessions_app:upload-list", {}, "/api/v1/uploads", activity_api.UploadListView),
    ("sessions_app:upload-recent", {}, "/api/v1/uploads/recent", activity_api.RecentUploadsView),
    ("sessions_app:stats", {}, "/api/v1/stats", activity_api.StatsView),
    (
        "sessions_app:session-events",
        {"session_id": SESSION},
        f"/api/v1/sessions/{SESSION}/events",
        sessions_api.SessionEventStreamView,
    ),
    (
        "sessions_app:upload-events",
        {"session_id": SESSION},
        f"/api/v1/upload/{SESSION}/events",
        sessions_api.PublicEventStreamView,
    ),
    ("sessions_app:encryption-server-key", {}, "/api/v1/encryption/server-key", sessions_api.EncryptionKeyView),
    ("sessions_app:encryption-key", {}, "/api/v1/encryption/key", sessions_api.EncryptionKeyView),
    (
        "sessions_app:upload-session",
        {"session_id": SESSION},
        f"/api/v1/upload/{SESSION}/session",
        sessions_api.PublicSessionView,
    ),
    (
        "sessions_app:upload-verify-password",
        {"session_id": SESSION},
        f"/api/v1/upload/{SESSION}/verify-password",
        sessions_api.VerifyPasswordView,
    ),
    (
        "sessions_app:upload-images",
        {"session_id": SESSION},
        f"/api/v1/upload/{SESSION}/images",
        sessions_api.ImageUploadView,
    ),
    (
        "sessions_app:upload-complete",
        {"session_id": SESSION},
        f"/api/v1/upload/{SESSION}/complete",
        sessions_api.CompleteView,
    ),
    (
        "delivery:session-delivery-status",
        {"session_id": SESSION},
        f"/api/v1/upload-sessions/{SESSION}/delivery-status",
        delivery_api.DeliveryStatusView,
    ),
    (
        "delivery:delivery-retry",
        {"session_id": SESSION, "delivery_id": DELIVERY},
        f"/api/v1/upload-sessions/{SESSION}/deliveries/{DELIVERY}/retry",
        delivery_api.DeliveryRetryView,
    ),
    (
        "delivery:webhook-list",
        {"project_id": PROJECT},
        f"/api/v1/projects/{PROJECT}/webhooks",
        event_webhooks_api.EventWebhookListView,
    ),
    (
        "delivery:webhook-detail",
        {"project_id": PROJECT, "webhook_id": WEBHOOK},
        f"/api/v1/projects/{PROJECT}/webhooks/{WEBHOOK}",
        event_webhooks_api.EventWebhookDetailView,
    ),
    (
        "delivery:webhook-test",
        {"project_id": PROJECT, "webhook_id": WEBHOOK},
        f"/api/v1/projects/{PROJECT}/webhooks/{WEBHOOK}/test",
        event_webhooks_api.EventWebhookTestView,
    ),
    (
        "delivery:webhook-deliveries",
        {"project_id": PROJECT, "webhook_id": WEBHOOK},
        f"/api/v1/projects/{PROJECT}/webhooks/{WEBHOOK}/deliveries",
        event_webhooks_api.EventDeliveryListView,
    ),
    (
        "delivery:webhook-delivery-retry",
        {"project_id": PROJECT, "webhook_id": WEBHOOK, "delivery_id": DELIVERY},
        f"/api/v1/projects/{PROJECT}/webhooks/{WEBHOOK}/deliveries/{DELIVERY}/retry",
        event_webhooks_api.EventDeliveryRetryView,
    ),
    ("destinations:destination-types", {}, "/api/v1/destination-types", destinations_api.DestinationTypesView),
    (
        "destinations:destination-list",
        {"project_id": PROJECT},
        f"/api/v1/projects/{PROJECT}/destinations",
        destinations_api.DestinationListView,
    ),
    (
        "destinations:destination-detail",
        {"project_id": PROJECT, "destination_id": DESTINATION},
        f"/api/v1/projects/{PROJECT}/destinations/{DESTINATION}",
        destinations_api.DestinationDetailView,
    ),
    (
        "destinations:destination-test",
        {"project_id": PROJECT, "destination_id": DESTINATION},
        f"/api/v1/projects/{PROJECT}/destinations/{DESTINATION}/test",
        destinations_api.DestinationTestView,
    ),
    ("projects:key-list", {"project_id": PROJECT}, f"/api/v1/projects/{PROJECT}/keys", projects_api.KeyListView),
    (
        "projects:key-detail",
        {"project_id": PROJECT, "key_id": KEY},
        f"/api/v1/projects/{PROJECT}/keys/{KEY}",
        projects_api.KeyDetailView,
    ),
    (
        "projects:key-signing-secret",
        {"project_id": PROJECT, "key_id": KEY},
        f"/api/v1/projects/{PROJECT}/keys/{KEY}/signing-secret",
        projects_api.KeySigningSecretView,
    ),
    (
        "projects:key-destinations",
        {"key_id": KEY},
        f"/api/v1/keys/{KEY}/destinations",
        projects_api.KeyDestinationsView,
    ),
    ("openapi-schema", {}, "/api/schema/", SchemaView),
    ("openapi-docs", {}, "/api/docs/", DocsView),
]


@pytest.mark.parametrize(("name", "kwargs", "path", "view"), ROUTES, ids=[route[0] for route in ROUTES])
def test_a_named_route_reverses_to_the_path_clients_call_and_that_path_reaches_its_view(name, kwargs, path, view):
    assert reverse(name, kwargs=kwargs) == path
    match = resolve(path)
    assert match.view_name == name
    assert match.func.view_class is view
    assert match.kwargs == kwargs


def named_api_routes(patterns=None, prefix: str = "", namespace: str = "") -> dict[str, str]:
    """Every route under api/ as {full name: route}, unnamed ones under their route, to spot a missing name."""
    found: dict[str, str] = {}
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found.update(named_api_routes(entry.url_patterns, route, inner))
        elif isinstance(entry, URLPattern) and route.startswith("api/"):
            found[f"{namespace}{entry.name}" if entry.name else f"<unnamed> {route}"] = route
    return found


def test_every_api_route_is_named_and_listed_above():
    assert set(named_api_routes()) == {route[0] for route in ROUTES}


def test_healthz_is_named():
    assert reverse("healthz") == "/healthz"
