"""The list of destination types: one entry per type, by dotted path, imported on first use (a worker does not
import every provider's SDK at start). Choices, forms and API validation derive from it; a new type needs no
migration."""

from functools import cache

from django.utils.module_loading import import_string

from destinations.backends.base import DestinationBackend

BACKENDS: dict[str, str] = {
    "azure_blob": "destinations.backends.azure_blob.AzureBlobBackend",
    "box": "destinations.backends.box.BoxBackend",
    "dropbox": "destinations.backends.dropbox.DropboxBackend",
    "ftp": "destinations.backends.ftp.FtpBackend",
    "google_drive": "destinations.backends.google_drive.GoogleDriveBackend",
    "onedrive": "destinations.backends.onedrive.OneDriveBackend",
    "s3": "destinations.backends.s3.S3Backend",
    "webdav": "destinations.backends.webdav.WebdavBackend",
    "webhook": "destinations.backends.webhook.WebhookBackend",
}


@cache
def backend_class(kind: str) -> type[DestinationBackend]:
    """The backend class of a type; KeyError for a type that is not registered."""
    return import_string(BACKENDS[kind])
