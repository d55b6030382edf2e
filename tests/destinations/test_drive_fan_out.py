"""A session fans out to all four cloud drives (issue 10's "done means"; docs/api.md "Delivery"): one destination
each of google_drive, dropbox, onedrive and box, connected as the connect flow stores them, one session with all
four, images uploaded through the API and delivered by the real worker; every image lands exactly once at every
provider's local server, byte for byte, through both the small and the large-file upload path of each, and the
delivery status says `delivered` for all of them."""

import hashlib

import pytest

from delivery.models import Delivery
from destinations.backends.box import BoxBackend, BoxConfig
from destinations.backends.dropbox import DropboxBackend, DropboxConfig
from destinations.backends.google_drive import GoogleDriveBackend, GoogleDriveConfig
from destinations.backends.onedrive import OneDriveBackend, OneDriveConfig
from destinations.models import Destination
from tests.destinations.helpers import create_session, upload_image
from tests.factories import make_persona, noisy_jpeg, wait_until
from tests.servers.google_drive import CLIENT_ID, CLIENT_SECRET, ROOT_ID

SMALL, LARGE = (160, 120), (800, 600)  # about 15 kB and 350 kB
IMAGES = [SMALL, LARGE, SMALL, LARGE]


@pytest.fixture
def drives(google_server, dropbox_server, onedrive_server, box_server, settings):
    """The four local providers, emptied, with APERTUR_OAUTH pointing each type at its server, and upload
    thresholds low enough that the large images take each provider's large-file path."""
    google_server.reset()
    onedrive_server.reset()
    box_server.reset()
    settings.APERTUR_OAUTH = {
        "google_drive": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": f"{google_server.url}/o/oauth2/v2/auth",
            "token_url": f"{google_server.url}/token",
            "revoke_url": f"{google_server.url}/revoke",
            "api_base": f"{google_server.url}/",
        },
        "dropbox": dropbox_server.settings(),
        "onedrive": onedrive_server.settings(),
        "box": box_server.settings(),
    }
    # Only the OneDrive server speaks TLS; its own certificate is the whole bundle.
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(onedrive_server.certificate)
    settings.APERTUR_GOOGLE_DRIVE_RESUMABLE_THRESHOLD_BYTES = 100 * 1024
    settings.APERTUR_GOOGLE_DRIVE_CHUNK_SIZE_BYTES = 256 * 1024  # Drive's chunk unit
    settings.APERTUR_DROPBOX_UPLOAD_THRESHOLD_BYTES = 32 * 1024
    settings.APERTUR_DROPBOX_CHUNK_SIZE_BYTES = 96 * 1024
    settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = 64 * 1024
    settings.APERTUR_ONEDRIVE_CHUNK_SIZE_BYTES = 320 * 1024  # Graph's chunk alignment
    settings.APERTUR_BOX_CHUNKED_THRESHOLD_BYTES = 100_000
    box_server.min_session_file_size = 100_000  # Box itself takes upload sessions from 20 MB
    box_server.part_size = 128 * 1024
    yield {"google_drive": google_server, "dropbox": dropbox_server, "onedrive": onedrive_server, "box": box_server}
    box_server.token_gate.set()


def connected(backend, project, name: str) -> str:
    """A destination holding the backend's config and token, as the connect flow's callback stores it."""
    config, secrets = backend.config.stored_form()
    return str(
        Destination.objects.create(project=project, type=backend.type, name=name, config=config, secrets=secrets).pk
    )


def test_one_session_fans_out_to_all_four_drives(api_client, worker, drives):
    google, dropbox, onedrive, box = drives["google_drive"], drives["dropbox"], drives["onedrive"], drives["box"]
    persona = make_persona("drive-fan-out")
    destinations = [
        connected(GoogleDriveBackend(GoogleDriveConfig(token=google.grant())), persona.project, "Drive"),
        connected(DropboxBackend(DropboxConfig(token=dropbox.tokens.grant())), persona.project, "Dropbox"),
        connected(OneDriveBackend(OneDriveConfig(token=onedrive.grant())), persona.project, "OneDrive"),
        connected(BoxBackend(BoxConfig(token=box.grant())), persona.project, "Box"),
    ]
    session = create_session(api_client, persona, destinations)
    sent = {}
    for index, size in enumerate(IMAGES):
        data = noisy_jpeg(size)
        accepted = upload_image(api_client, session["id"], data, name=f"shot-{index}.jpg")
        sent[accepted["id"]] = hashlib.sha256(data).hexdigest()

    expected = len(IMAGES) * len(destinations)
    wait_until(lambda: Delivery.objects.filter(status="delivered").count() == expected, timeout=60)
    assert not Delivery.objects.exclude(status="delivered").exists()

    status = api_client.get(f"/api/v1/upload-sessions/{session['id']}/delivery-status", **persona.auth).json()
    assert {delivery["status"] for image in status["images"] for delivery in image["deliveries"]} == {"delivered"}
    assert sum(len(image["deliveries"]) for image in status["images"]) == expected

    def digests_by_image(files: dict[str, bytes]) -> dict[str, str]:
        """sha256 by the image id in each stored name (the default template names files `<index>_<image id>.<ext>`);
        a duplicate would show as two names for one image."""
        found: dict[str, str] = {}
        for name, data in files.items():
            image_id = next(image for image in sent if image in name)
            assert image_id not in found, f"{image_id} stored twice: {sorted(files)}"
            found[image_id] = hashlib.sha256(data).hexdigest()
        return found

    stored = {
        "google_drive": google.files_below(ROOT_ID),
        "dropbox": dropbox.delivered(),
        "onedrive": onedrive.files(),
        "box": box.files(),
    }
    for kind, files in stored.items():
        assert digests_by_image(files) == sent, kind
    # Each provider's default folder, and both upload paths taken at each.
    assert all(path.startswith("/Apps/Apertur/") for path in stored["dropbox"]), stored["dropbox"]
    assert all(path.startswith("Apertur/") for path in stored["onedrive"]), stored["onedrive"]
    google_uploads = {
        path.split("uploadType=")[1].split("&")[0] for method, path in google.requests if "uploadType=" in path
    }
    assert {"multipart", "resumable"} <= google_uploads
    assert {"files/upload", "files/upload_session/finish"} <= set(dropbox.calls)
    onedrive_paths = {path for _, path in onedrive.requests}
    assert any(path.endswith(":/content") for path in onedrive_paths)
    assert any(path.startswith("/upload/") for path in onedrive_paths)
    box_paths = {(request.method, request.path) for request in box.requests}
    assert ("POST", "/api/2.0/files/content") in box_paths
    assert any(path.endswith("/commit") for _, path in box_paths)
