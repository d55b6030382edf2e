"""The JSON documents of the API-key endpoints (docs/api.md "API keys"); no queries here beyond what the selectors
prefetched.

Field names are the official clients' camelCase, except the `PUT …/destinations` body they send in snake_case.
"""

from apertur.api.formats import iso
from projects.models import ALL_MIME_TYPES, ApiKey


def api_key_document(api_key: ApiKey) -> dict:
    """A key as every key endpoint shows it: never its secret, nor its signing secret (only whether it has one).

    `allowedMimeTypes` shows all four types for a key without a list of its own (what its sessions get); TOTP and
    client certificates are not offered by this server, so they read as off.
    """
    return {
        "id": str(api_key.pk),
        "prefix": api_key.prefix,
        "label": api_key.label,
        "env": api_key.env,
        "isActive": api_key.is_active,
        "lastUsedAt": iso(api_key.last_used_at),
        "maxImages": api_key.max_images,
        "allowedMimeTypes": api_key.allowed_mime_types or list(ALL_MIME_TYPES),
        "maxImageDimension": api_key.max_image_dimension,
        "longPollingEnabled": api_key.long_polling_enabled,
        "defaultDestinations": [str(destination.pk) for destination in api_key.default_destinations.all()],
        "allowedIps": api_key.allowed_ips,
        "allowedDomains": api_key.allowed_domains,
        "totpEnabled": False,
        "clientCertEnabled": False,
        "clientCertFingerprint": None,
        "signingEnabled": bool(api_key.signing_secret),
        "createdAt": iso(api_key.created_at),
    }


def created_key_document(api_key: ApiKey, *, plain_key: str) -> dict:
    """The 201 body of `POST /api/v1/projects/{projectId}/keys`: the only answer that carries the key itself."""
    return {"key": api_key_document(api_key), "plainTextKey": plain_key}


def key_destinations_document(api_key: ApiKey) -> dict:
    """The answer of `PUT /api/v1/keys/{keyId}/destinations`."""
    return {
        "destinations": [
            {
                "id": str(destination.pk),
                "type": destination.type,
                "name": destination.name,
                "isActive": destination.is_active,
            }
            for destination in api_key.default_destinations.all()
        ],
        "longPollingEnabled": api_key.long_polling_enabled,
    }


def signing_secret_document(api_key: ApiKey, *, signing_secret: str) -> dict:
    """The 201 body of `POST …/keys/{keyId}/signing-secret`: the only answer that carries the signing secret."""
    return {"key": api_key_document(api_key), "signingSecret": signing_secret}
