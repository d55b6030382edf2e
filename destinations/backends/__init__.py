"""The list of destination types: one entry per type, everything else (choices, API validation) derives from it."""

from destinations.backends.base import DestinationBackend
from destinations.backends.s3 import S3Backend
from destinations.backends.webhook import WebhookBackend

BACKENDS: dict[str, type[DestinationBackend]] = {
    "s3": S3Backend,
    "webhook": WebhookBackend,
}


def backend_class(kind: str) -> type[DestinationBackend]:
    return BACKENDS[kind]
