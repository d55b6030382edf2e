"""The JSON documents of the destination endpoints; no queries here (docs/api.md "Destinations")."""

from typing import Any

from apertur.api.formats import iso
from destinations.backends.base import CheckResult
from destinations.models import Destination
from destinations.oauth_connect import ProviderStatus
from destinations.services import public_config


def destination_document(destination: Destination) -> dict:
    """A destination as the API shows it. Secrets are masked by `services.public_config`: the mask's format lives
    there, beside the PATCH rule that keeps a secret whose mask is sent back unchanged."""
    return {
        "id": str(destination.pk),
        "type": destination.type,
        "name": destination.name,
        "config": public_config(destination),
        "isActive": destination.is_active,
        "createdAt": iso(destination.created_at),
        "updatedAt": iso(destination.updated_at),
        "lastDeliveryAt": iso(destination.last_delivery_at),
        "lastError": destination.last_error or None,
        "needsReconnect": destination.needs_reconnect,
    }


def check_result_document(result: CheckResult) -> dict:
    """The answer of POST …/destinations/{destId}/test: `status` only where the destination reported an HTTP
    status, `error` only when there is one."""
    body: dict[str, Any] = {"success": result.success, "message": result.message}
    if result.http_status is not None:
        body["status"] = result.http_status
    if result.error:
        body["error"] = result.error
    return body


def destination_type_document(kind: str, *, provider: ProviderStatus | None, connect_url: str | None) -> dict:
    """One entry of GET /destination-types; `provider` and `connect_url` only for a type connected by OAuth."""
    if provider is None:
        return {"type": kind, "oauth": False, "configured": True}
    return {
        "type": kind,
        "oauth": True,
        "configured": provider.configured,
        "connectUrl": connect_url,
        "redirectUri": provider.redirect_uri,
    }
