"""Fan-out (docs/api.md "Delivery"): one session with a destination of every storage type (s3, azure_blob, ftp,
ftps, sftp, webdav, dropbox) and a webhook, five images; every image lands exactly once at every destination, byte
for byte, and the delivery status says `delivered` for all of them."""

import hashlib

import pytest

from delivery.models import Delivery
from destinations.backends.dropbox import DropboxBackend, DropboxConfig
from tests.destinations.contract import stored_destination
from tests.destinations.helpers import create_destination, create_session, upload_image
from tests.factories import image_bytes, make_persona, wait_until

IMAGES = 5


@pytest.fixture
def fan_out_worker(transactional_db, settings):
    from tests.conftest import in_process_worker

    with in_process_worker(settings, threads=8) as running:
        yield running


def test_one_session_fans_out_to_every_storage_type_and_a_webhook(
    api_client,
    fan_out_worker,
    moto_server,
    azurite_server,
    ftp_server,
    ftps_server,
    sftp_server,
    webdav_server,
    webhook_receiver,
    dropbox_server,
    settings,
):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(ftps_server.certificate)  # the FTPS server's own certificate
    persona = make_persona("fan-out")
    bucket = moto_server.create_bucket()
    container = azurite_server.create_container()
    ftp_user, ftp_home = ftp_server.add_user()
    ftps_user, ftps_home = ftps_server.add_user()
    sftp_user, sftp_home = sftp_server.add_user()
    webdav_url, webdav_folder = webdav_server.new_folder()
    configs = {
        "s3": ("s3", moto_server.destination_config(bucket)),
        "azure_blob": (
            "azure_blob",
            {"connectionString": azurite_server.connection_string(), "container": container},
        ),
        "ftp": ("ftp", ftp_server.config(ftp_user, remotePath="in/ftp")),
        "ftps": ("ftp", ftps_server.config(ftps_user, remotePath="in/ftps")),
        "sftp": ("ftp", sftp_server.config(sftp_user, remotePath="in/sftp")),
        "webdav": ("webdav", webdav_server.config(webdav_url, remotePath="in/webdav")),
        "webhook": ("webhook", {"url": f"{webhook_receiver.url}/in", "secret": "fan-out-secret", "format": "binary"}),
    }
    destinations = {
        name: create_destination(api_client, persona, kind, config, name=name)["id"]
        for name, (kind, config) in configs.items()
    }
    # An OAuth destination gets its token by connecting (not through the API): stored as the connect flow would.
    dropbox_config = DropboxConfig(token=dropbox_server.tokens.grant(), folderPath="/in/dropbox")
    destinations["dropbox"] = str(stored_destination(DropboxBackend(dropbox_config), persona.project).pk)
    session = create_session(api_client, persona, list(destinations.values()))
    sent = {}
    for index in range(IMAGES):
        data = image_bytes(color=(index * 40, 10, 200 - index * 30))
        accepted = upload_image(api_client, session["id"], data, name=f"shot-{index}.jpg")
        sent[accepted["id"]] = hashlib.sha256(data).hexdigest()

    expected = IMAGES * len(destinations)
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

    def folder(home) -> dict[str, bytes]:
        return {str(path.relative_to(home)): path.read_bytes() for path in home.rglob("*") if path.is_file()}

    stored = {
        "s3": moto_server.objects(bucket),
        "azure_blob": azurite_server.blobs(container),
        "ftp": folder(ftp_home),
        "ftps": folder(ftps_home),
        "sftp": folder(sftp_home),
        "webdav": folder(webdav_folder),
        "dropbox": dropbox_server.delivered(),
        "webhook": {
            request.header("X-Aptr-Image-Id"): request.body for request in webhook_receiver.wait_for_requests(IMAGES)
        },
    }
    for name, files in stored.items():
        assert digests_by_image(files) == sent, name
    for name in ("ftp", "ftps", "sftp", "webdav"):
        assert all(path.startswith(f"in/{name}/") for path in stored[name]), stored[name]
    assert all(path.startswith("/in/dropbox/") for path in stored["dropbox"]), stored["dropbox"]
