"""The google_drive destination against a local Google (tests/servers/google_drive.py): the real
google-api-python-client and google-auth, pointed there by the APERTUR_OAUTH settings only."""

import base64
import hashlib
import io
import secrets
import threading
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection

from apertur.deadlines import Deadline
from apertur.http import provider_session
from delivery.models import Delivery
from delivery.services import delivery_execute
from destinations.attempts import backend_for
from destinations.backends.base import DeliveryError
from destinations.backends.google_drive import GoogleDriveBackend, GoogleDriveConfig
from destinations.models import Destination
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    make_staged_image,
    rendered_path,
    stored_destination,
)
from tests.destinations.helpers import create_destination, create_session, upload_image
from tests.destinations.test_destinations_api import assert_no_secret, destinations_url
from tests.factories import make_persona, noisy_jpeg, wait_until
from tests.servers.google_drive import CLIENT_ID, CLIENT_SECRET, FOLDER_MIME_TYPE, ROOT_ID, GoogleServer
from tests.servers.tarpit import TarpitServer

RESUMABLE_THRESHOLD = 100 * 1024
CHUNK_SIZE = 256 * 1024  # Drive's unit for chunks


@pytest.fixture
def google(google_server: GoogleServer, settings) -> GoogleServer:
    google_server.reset()
    settings.APERTUR_OAUTH = {
        "google_drive": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": f"{google_server.url}/o/oauth2/v2/auth",
            "token_url": f"{google_server.url}/token",
            "revoke_url": f"{google_server.url}/revoke",
            "api_base": f"{google_server.url}/",
        }
    }
    settings.APERTUR_GOOGLE_DRIVE_RESUMABLE_THRESHOLD_BYTES = RESUMABLE_THRESHOLD
    settings.APERTUR_GOOGLE_DRIVE_CHUNK_SIZE_BYTES = CHUNK_SIZE
    return google_server


@pytest.fixture
def folder(google: GoogleServer) -> str:
    """The destination's folderId: a folder of its own for each test."""
    return google.new_folder("Apertur")


def drive_backend(token: dict, **config) -> GoogleDriveBackend:
    return GoogleDriveBackend(GoogleDriveConfig.model_validate({"token": token, **config}))


class DriveTarget(ContractTarget):
    def __init__(self, google: GoogleServer, folder: str) -> None:
        self.google, self.folder = google, folder

    def backend(self) -> GoogleDriveBackend:
        return drive_backend(self.google.grant(), folderId=self.folder)

    def failing_backend(self) -> GoogleDriveBackend:
        self.google.fail_next("POST", "/upload/drive/v3/files", times=2, status=500)
        self.google.fail_next("PATCH", "/upload/drive/v3/files", times=2, status=500)
        return self.backend()

    def backend_with_refused_credentials(self) -> GoogleDriveBackend:
        # A token set Google never issued: the access token is refused and so is its refresh.
        forged = {"access_token": "ya29.forged", "refresh_token": "1//forged", "expires_at": time.time() + 3600}
        return drive_backend(forged, folderId=self.folder)

    def delivered(self) -> dict[str, bytes]:
        return self.google.files_below(self.folder)

    def location(self, image, path: str) -> str:
        return path


class TestGoogleDriveBackendContract(BackendContract):
    rewritable_secret = ("token", "refresh_token")

    @pytest.fixture
    def target(self, google, folder) -> DriveTarget:
        return DriveTarget(google, folder)


def stored_drive(google: GoogleServer, project, folder: str, **token_changes) -> Destination:
    return stored_destination(drive_backend({**google.grant(), **token_changes}, folderId=folder), project)


def stored_token(destination: Destination) -> dict:
    return Destination.objects.get(pk=destination.pk).secrets["token"]


def uploads(google: GoogleServer) -> list[str]:
    """The uploadType of each upload request, in order; chunk PUTs as "chunk"."""
    kinds = []
    for method, path in google.requests:
        if path.startswith("/upload/drive/v3/files"):
            kinds.append("chunk" if method == "PUT" else path.split("uploadType=")[1].split("&")[0])
    return kinds


# --- uploads: multipart up to the threshold, resumable above ----------------------------------------------


def test_a_small_image_is_one_multipart_upload_with_its_name_and_type(google, folder):
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)

    receipt = drive_backend(google.grant(), folderId=folder).deliver(image, path)

    [stored] = [f for f in google.files.values() if f.mime_type == "image/jpeg"]
    assert image.size_bytes <= RESUMABLE_THRESHOLD
    assert uploads(google) == ["multipart"]
    assert stored.name == path.rsplit("/", 1)[1]
    assert hashlib.sha256(stored.content).hexdigest() == image.sha256
    assert receipt.remote_reference == f"google_drive:{stored.id} ({path})"


def test_a_large_image_goes_up_in_resumable_chunks_and_reads_back_the_same(google, folder):
    data = noisy_jpeg((1024, 768))
    image = make_staged_image(data)
    path = rendered_path(image)

    drive_backend(google.grant(), folderId=folder).deliver(image, path)

    assert len(data) > 2 * CHUNK_SIZE
    chunks = -(-len(data) // CHUNK_SIZE)
    assert uploads(google) == ["resumable"] + ["chunk"] * chunks
    assert hashlib.sha256(google.files_below(folder)[path]).hexdigest() == image.sha256


def test_a_chunk_whose_connection_drops_is_resumed_from_what_drive_received(google, folder):
    data = noisy_jpeg((1024, 768))
    image = make_staged_image(data)
    google.fail_next("PUT", "upload_id=", skip=1, drop_connection=True)  # the second chunk

    drive_backend(google.grant(), folderId=folder).deliver(image, rendered_path(image))

    assert google.files_below(folder) == {rendered_path(image): data}
    chunks = -(-len(data) // CHUNK_SIZE)
    # The first chunk, the dropped second, a status query (Drive answers 308 with what it holds), then the
    # second chunk again and the rest: nothing sent twice but the chunk that was cut off.
    assert uploads(google) == ["resumable"] + ["chunk"] * (chunks + 2)


def test_a_large_image_retried_replaces_the_file_by_a_resumable_update(google, folder):
    first, second = noisy_jpeg((1024, 768)), noisy_jpeg((1024, 768))
    image = make_staged_image(first)
    path = rendered_path(image)
    backend = drive_backend(google.grant(), folderId=folder)

    backend.deliver(image, path)
    backend.deliver(replace(image, opener=lambda: io.BytesIO(second), size_bytes=len(second)), path)

    assert google.files_below(folder) == {path: second}
    [stored] = [f for f in google.files.values() if f.mime_type == "image/jpeg"]
    assert [(m, p.split("?")[0]) for m, p in google.requests if "uploadType=resumable" in p and m != "PUT"] == [
        ("POST", "/upload/drive/v3/files"),
        ("PATCH", f"/upload/drive/v3/files/{stored.id}"),
    ]


# --- folders -----------------------------------------------------------------------------------------------


def test_folders_of_the_path_are_created_once_and_reused_for_the_next_images(google, folder):
    backend = drive_backend(google.grant(), folderId=folder, pathTemplate="{year}/{session_id}/{index}.{ext}")
    images = [make_staged_image(noisy_jpeg((160, 120)), index=number) for number in range(3)]

    for image in images:
        backend.deliver(image, backend.remote_path(image))

    assert sorted(google.files_below(folder)) == [f"2026/{images[0].session_id}/{n}.jpg" for n in range(3)]
    assert len(google.folders_named("2026")) == 1
    assert len(google.folders_named(images[0].session_id)) == 1
    folder_creations = [p for m, p in google.requests if m == "POST" and p.startswith("/drive/v3/files")]
    listings = [p for m, p in google.requests if m == "GET" and p.startswith("/drive/v3/files")]
    assert len(folder_creations) == 2
    # The first image: each folder looked up, created and confirmed (2 x 2), then its own name; the next two
    # images: their own name only — the folder ids come from the cache.
    assert len(listings) == 2 * 2 + 1 + 2


def test_an_existing_folder_of_the_same_name_is_used_rather_than_a_twin(google, folder):
    existing = google.new_folder("sess_01JCONTRACT00000000000001", parent=folder)
    image = make_staged_image(noisy_jpeg((160, 120)))

    drive_backend(google.grant(), folderId=folder).deliver(image, rendered_path(image))

    assert [f.id for f in google.folders_named(image.session_id)] == [existing]
    assert google.files_below(existing) == {rendered_path(image).split("/")[1]: image.open().read()}


def test_a_cached_folder_deleted_behind_our_back_is_created_again(google, folder):
    backend = drive_backend(google.grant(), folderId=folder)
    first = make_staged_image(noisy_jpeg((160, 120)), index=0)
    second = make_staged_image(noisy_jpeg((160, 120)), index=1, image_id="img_01JCONTRACT0000000000000002")
    backend.deliver(first, rendered_path(first))
    [session_folder] = google.folders_named(first.session_id)

    google.delete(session_folder.id)  # the user deleted it in Drive; our cache still holds its id
    backend.deliver(second, rendered_path(second))

    [recreated] = google.folders_named(first.session_id)
    assert recreated.id != session_folder.id
    assert google.files_below(folder) == {rendered_path(second): second.open().read()}


def test_a_cached_folder_moved_to_the_trash_is_replaced_by_a_new_one(google, folder):
    backend = drive_backend(google.grant(), folderId=folder)
    first = make_staged_image(noisy_jpeg((160, 120)), index=0)
    second = make_staged_image(noisy_jpeg((160, 120)), index=1, image_id="img_01JCONTRACT0000000000000002")
    backend.deliver(first, rendered_path(first))
    [session_folder] = google.folders_named(first.session_id)

    google.trash(session_folder.id)
    backend.deliver(second, rendered_path(second))

    [recreated] = [f for f in google.folders_named(first.session_id) if not f.trashed]
    assert recreated.id != session_folder.id
    assert google.files_below(recreated.id) == {rendered_path(second).split("/")[1]: second.open().read()}


def test_two_workers_creating_the_same_folder_at_once_end_in_one_folder(google, transactional_db):
    folder = google.new_folder("Race")
    destination = stored_drive(google, make_persona("racer").project, folder)
    images = [
        make_staged_image(noisy_jpeg((160, 120)), index=n, image_id=f"img_01JRACE00000000000000000{n}")
        for n in range(4)
    ]
    all_started = threading.Barrier(len(images))
    errors: list[Exception] = []

    def deliver(image) -> None:
        try:
            backend = backend_for(Destination.objects.get(pk=destination.pk))
            all_started.wait(5)
            backend.deliver(image, rendered_path(image))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver, args=(image,)) for image in images]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)

    assert errors == []
    assert len(google.folders_named(images[0].session_id)) == 1
    assert sorted(google.files_below(folder)) == sorted(rendered_path(image) for image in images)


def test_the_default_folder_is_the_root_of_my_drive(google):
    image = make_staged_image(noisy_jpeg((160, 120)))

    drive_backend(google.grant()).deliver(image, rendered_path(image))

    [session_folder] = google.folders_named(image.session_id)
    assert session_folder.parents == [ROOT_ID]


def test_a_folder_id_that_does_not_exist_is_reported_clearly(google):
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        drive_backend(google.grant(), folderId="1NoSuchFolder").deliver(image, rendered_path(image))

    assert raised.value.http_status == 404
    assert "folderId" in raised.value.message
    assert raised.value.needs_reconnect is False


# --- retries, rate limits and server errors ----------------------------------------------------------------


def test_a_retry_of_the_same_image_updates_the_file_instead_of_adding_one(google, folder):
    first, retried = noisy_jpeg((160, 120)), noisy_jpeg((160, 120))
    image = make_staged_image(first)
    path = rendered_path(image)
    backend = drive_backend(google.grant(), folderId=folder)

    backend.deliver(image, path)
    backend.deliver(replace(image, attempt=2, opener=lambda: io.BytesIO(retried), size_bytes=len(retried)), path)

    assert google.files_below(folder) == {path: retried}
    assert len([f for f in google.files.values() if f.mime_type != FOLDER_MIME_TYPE]) == 1


def test_a_429_is_transient_and_carries_the_wait_drive_asked_for(google, folder):
    google.fail_next(
        "POST", "uploadType=multipart", status=429, reason="rateLimitExceeded", headers={"Retry-After": "7"}
    )
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        drive_backend(google.grant(), folderId=folder).deliver(image, rendered_path(image))

    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    assert raised.value.http_status == 429
    assert raised.value.retry_after == 7


def test_a_user_rate_limit_403_is_transient_not_a_credentials_problem(google, folder):
    google.fail_next("POST", "uploadType=multipart", status=403, reason="userRateLimitExceeded")
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        drive_backend(google.grant(), folderId=folder).deliver(image, rendered_path(image))

    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    assert "userRateLimitExceeded" in raised.value.message
    assert google.refreshes == 0


def test_a_5xx_is_transient_and_the_next_attempt_delivers(google, folder):
    google.fail_next("POST", "uploadType=multipart", status=503, reason="backendError")
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = drive_backend(google.grant(), folderId=folder)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))
    backend.deliver(image, rendered_path(image))

    assert (raised.value.permanent, raised.value.http_status) == (False, 503)
    assert google.files_below(folder) == {rendered_path(image): image.open().read()}


def test_the_delivery_engine_waits_at_least_as_long_as_retry_after_asks(google, folder, owner, api_client, settings):
    settings.APERTUR_RETRY_DELAYS = [1, 1, 1, 1, 1]
    destination = stored_drive(google, owner.project, folder)
    google.fail_next(
        "POST", "uploadType=multipart", status=429, reason="rateLimitExceeded", headers={"Retry-After": "90"}
    )
    session = create_session(api_client, owner, [str(destination.pk)])
    upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    delivery = Delivery.objects.get(destination=destination)

    delivery_execute(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert "rate limit" in delivery.last_error
    assert delivery.next_retry_at.timestamp() - time.time() > 80


def test_a_drive_that_drips_its_answer_is_cut_off_by_the_attempt_deadline(google, settings):
    # Each byte comes quickly, so no per-read timeout fires: only the deadline, which shuts the sockets opened
    # through the outbound gate, can end this — proof that googleapiclient's HTTP goes through the gate.
    tarpit = TarpitServer(mode="drip", interval=0.2, limit=15)
    settings.APERTUR_OAUTH["google_drive"]["api_base"] = f"{tarpit.url}/"
    backend = drive_backend(google.grant())
    image = make_staged_image(noisy_jpeg((160, 120)))
    started = time.monotonic()
    try:
        with Deadline(1) as deadline, pytest.raises(DeliveryError) as raised:
            backend.context.deadline = deadline
            backend.deliver(image, rendered_path(image))
    finally:
        tarpit.stop()

    assert time.monotonic() - started < 5
    assert raised.value.permanent is False


# --- tokens ------------------------------------------------------------------------------------------------


def test_a_token_close_to_expiry_is_refreshed_first_and_saved(google, owner, folder):
    destination = stored_drive(google, owner.project, folder, expires_at=time.time() + 30)
    before = stored_token(destination)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    after = stored_token(destination)
    assert google.refreshes == 1
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]  # Google keeps the refresh token
    assert after["expires_at"] > time.time() + 3000
    assert list(google.files_below(folder)) == [rendered_path(image)]


def test_an_access_token_revoked_early_is_refreshed_once_and_the_upload_repeated(google, owner, folder):
    destination = stored_drive(google, owner.project, folder)
    google.expire_access_tokens()
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert google.refreshes == 1
    assert list(google.files_below(folder)) == [rendered_path(image)]


def test_a_rotated_refresh_token_is_saved_and_two_racing_workers_lose_neither(google, transactional_db):
    google.rotate_refresh_tokens = True
    folder = google.new_folder("Rotation")
    destination = stored_drive(google, make_persona("rotator").project, folder, expires_at=time.time() - 10)
    google.token_gate.clear()  # hold refreshes at Google while both workers are under way
    images = [make_staged_image(noisy_jpeg((160, 120)), image_id=f"img_ROTATE{n}", index=n) for n in range(2)]
    errors: list[Exception] = []

    def deliver(image) -> None:
        try:
            backend_for(Destination.objects.get(pk=destination.pk)).deliver(image, rendered_path(image))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver, args=(image,)) for image in images]
    for worker in workers:
        worker.start()
    assert google.token_requests_arrived.acquire(timeout=10), "no refresh reached Google"
    # Without the lock the second worker would send its own refresh within milliseconds; an absence cannot be
    # awaited, so this wait is bounded instead.
    second_refresh_arrived = google.token_requests_arrived.acquire(timeout=1.5)
    google.token_gate.set()
    for worker in workers:
        worker.join(30)

    assert errors == []
    assert second_refresh_arrived is False
    assert google.refreshes == 1
    assert stored_token(destination)["refresh_token"] in google.refresh_tokens
    assert sorted(google.files_below(folder)) == sorted(rendered_path(image) for image in images)


def test_a_revoked_grant_needs_reconnect_and_a_reconnect_lets_the_delivery_complete(google, owner, folder):
    destination = stored_drive(google, owner.project, folder, expires_at=time.time() - 10)
    google.revoke_everything()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert (raised.value.needs_reconnect, raised.value.permanent) == (True, False)
    assert "invalid_grant" in raised.value.message
    destination.refresh_from_db()
    assert destination.needs_reconnect is True
    # Reconnecting stores a new grant (what the connect flow's callback does); the retried attempt delivers.
    Destination.objects.filter(pk=destination.pk).update(secrets={"token": google.grant()}, needs_reconnect=False)
    backend_for(Destination.objects.get(pk=destination.pk)).deliver(image, rendered_path(image))
    assert list(google.files_below(folder)) == [rendered_path(image)]


def test_a_401_after_a_refresh_needs_reconnect(google, owner, folder, monkeypatch):
    destination = stored_drive(google, owner.project, folder)
    # Every access token Google hands out is refused at once (consent withdrawn for the API only).
    monkeypatch.setattr(google, "token_valid", lambda authorization: False)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert google.refreshes == 1
    destination.refresh_from_db()
    assert destination.needs_reconnect is True


def test_a_session_waits_on_a_revoked_grant_and_delivers_once_reconnected(google, api_client, worker, settings):
    settings.APERTUR_RETRY_DELAYS = [1, 1, 1, 1, 1]
    persona = make_persona("drive-user")
    folder = google.new_folder("Claims")
    destination = create_destination(api_client, persona, "google_drive", {"folderId": folder})
    # What the connect flow stored, for a grant the user has since revoked at Google.
    revoked = {**google.grant(), "expires_at": time.time() - 10}
    Destination.objects.filter(pk=destination["id"]).update(secrets={"token": revoked})
    google.revoke_everything()
    session = create_session(api_client, persona, [destination["id"]])
    data = noisy_jpeg((160, 120))
    image = upload_image(api_client, session["id"], data)

    wait_until(lambda: Destination.objects.get(pk=destination["id"]).needs_reconnect, timeout=15)
    assert Delivery.objects.get().status in {Delivery.Status.PENDING, Delivery.Status.DELIVERING}
    # Reconnecting (the connect flow's callback) stores a new grant; the waiting delivery completes on schedule.
    Destination.objects.filter(pk=destination["id"]).update(secrets={"token": google.grant()})
    wait_until(lambda: Delivery.objects.get().status == Delivery.Status.DELIVERED, timeout=15)

    assert google.files_below(folder) == {f"{session['id']}/0_{image['id']}.jpg": data}
    shown = api_client.get(f"/api/v1/projects/{persona.project.pk}/destinations", **persona.auth).json()
    assert [(d["needsReconnect"], d["lastError"]) for d in shown] == [(False, None)]


# --- the connect flow's view of the provider -----------------------------------------------------------------


def test_the_local_google_issues_a_code_that_the_token_endpoint_exchanges_with_pkce(google):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": "http://testserver/destinations/oauth/google_drive/callback",
        "response_type": "code",
        "scope": " ".join(GoogleDriveBackend.scopes),
        "state": "state-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **GoogleDriveBackend.authorize_params,
    }
    with provider_session() as session:
        authorized = session.get(
            f"{GoogleDriveBackend.endpoint('authorize_url')}?{urlencode(query)}", allow_redirects=False
        )
        answer = parse_qs(urlsplit(authorized.headers["Location"]).query)
        form = {
            "grant_type": "authorization_code",
            "code": answer["code"][0],
            "redirect_uri": query["redirect_uri"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        wrong_verifier = session.post(GoogleDriveBackend.endpoint("token_url"), data={**form, "code_verifier": "x"})
        authorized_again = session.get(
            f"{GoogleDriveBackend.endpoint('authorize_url')}?{urlencode(query)}", allow_redirects=False
        )
        form["code"] = parse_qs(urlsplit(authorized_again.headers["Location"]).query)["code"][0]
        tokens = session.post(GoogleDriveBackend.endpoint("token_url"), data={**form, "code_verifier": verifier})
        replayed = session.post(GoogleDriveBackend.endpoint("token_url"), data={**form, "code_verifier": verifier})
        revoked = session.post(
            GoogleDriveBackend.endpoint("revoke_url"), data={"token": tokens.json()["refresh_token"]}
        )

    assert authorized.status_code == 302 and answer["state"] == ["state-123"]
    assert wrong_verifier.json()["error"] == "invalid_grant"
    assert tokens.status_code == 200 and tokens.json()["refresh_token"]
    assert replayed.json()["error"] == "invalid_grant"
    assert revoked.status_code == 200 and tokens.json()["refresh_token"] not in google.refresh_tokens


def test_the_backend_declares_what_the_connect_flow_needs():
    assert GoogleDriveBackend.supports_pkce is True
    assert GoogleDriveBackend.authorize_params == {"access_type": "offline", "prompt": "consent"}
    assert GoogleDriveBackend.scopes == ("https://www.googleapis.com/auth/drive.file",)


# --- the API's view ----------------------------------------------------------------------------------------


def test_the_api_edits_the_folder_of_a_connected_drive_and_never_shows_or_takes_its_token(google, api_client, owner):
    created = create_destination(api_client, owner, "google_drive", {"folderId": "1AbcFolder"})
    grant = google.grant()
    Destination.objects.filter(pk=created["id"]).update(secrets={"token": grant})  # as the connect flow stores it
    url = destinations_url(owner, created["id"])

    patched = api_client.patch(url, {"config": {"pathTemplate": "{date}/{filename}"}}, format="json", **owner.auth)
    with_token = api_client.patch(url, {"config": {"token": grant}}, format="json", **owner.auth)
    bad_template = api_client.post(
        destinations_url(owner),
        {"type": "google_drive", "name": "Drive", "config": {"pathTemplate": "{album}/{filename}"}},
        format="json",
        **owner.auth,
    )

    assert patched.status_code == 200, patched.content
    shown = patched.json()["config"]
    assert (shown["folderId"], shown["pathTemplate"]) == ("1AbcFolder", "{date}/{filename}")
    assert {value[:4] for value in shown["token"].values()} == {"••••"}  # masked, as every secret
    assert_no_secret(patched, grant["access_token"], grant["refresh_token"])
    assert with_token.status_code == 400
    assert list(with_token.json()["fields"]) == ["config.token"]
    assert bad_template.status_code == 400
    assert list(bad_template.json()["fields"]) == ["config.pathTemplate"]
    assert Destination.objects.get(pk=created["id"]).secrets == {"token": grant}


def test_a_folder_the_listing_does_not_show_yet_right_after_its_creation_is_used(google, folder):
    """Drive's search may lag behind a create: the confirming listing comes back empty, and the folder just made
    is the one to use (it used to be an IndexError)."""
    image = make_staged_image(noisy_jpeg((160, 120)))
    # Let the first listing (the look-up) through; the second (the confirmation after the create) is stale.
    google.fail_next("GET", "/drive/v3/files?", skip=1, answer=(200, {}, {"kind": "drive#fileList", "files": []}))

    drive_backend(google.grant(), folderId=folder).deliver(image, rendered_path(image))

    assert list(google.files_below(folder)) == [rendered_path(image)]
    assert len(google.folders_named(image.session_id)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"kind": "drive#fileList", "files": [{"name": "x"}]},  # a file without an id
        {"kind": "drive#fileList", "files": "none"},  # files is not a list
        ["not", "an", "object"],
    ],
)
def test_an_answer_drive_should_not_send_fails_the_attempt_for_now(google, folder, answer):
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = drive_backend(google.grant(), folderId=folder)
    google.fail_next("GET", "/drive/v3/files?", answer=(200, {}, answer))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.permanent is False and raised.value.needs_reconnect is False
    backend.deliver(image, rendered_path(image))
    assert list(google.files_below(folder)) == [rendered_path(image)]
