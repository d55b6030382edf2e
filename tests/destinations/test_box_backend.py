"""The box destination (destinations/backends/box.py) with the real boxsdk against the local Box in
tests/servers/box.py: the contract, both upload paths read back by SHA-256, folders created once and recreated when
deleted, retries that replace, Box's rotating refresh tokens, and its failures (429, 5xx, a connection broken
mid-part)."""

import email.utils
import hashlib
import io
import math
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection
from django.utils import timezone

from destinations.attempts import backend_for
from destinations.backends import backend_class
from destinations.backends.base import DeliveryError
from destinations.backends.box import BoxBackend, BoxConfig
from destinations.models import Destination
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    make_staged_image,
    rendered_path,
    stored_destination,
)
from tests.factories import image_bytes, make_persona, noisy_jpeg
from tests.servers.box import BoxServer

SMALL_PART = 64 * 1024


@pytest.fixture
def box(box_server, settings):
    box_server.reset()
    settings.APERTUR_OAUTH = {"box": box_server.settings()}
    yield box_server
    box_server.token_gate.set()


@pytest.fixture
def chunked(box, settings):
    """The chunked path for images of 100 kB and more, with small parts (Box itself takes 20 MB and more)."""
    settings.APERTUR_BOX_CHUNKED_THRESHOLD_BYTES = 100_000
    box.min_session_file_size = 100_000
    box.part_size = SMALL_PART
    return box


def box_backend(token: dict, **config) -> BoxBackend:
    return BoxBackend(BoxConfig.model_validate({"token": token, **config}))


def image_of(data: bytes, **overrides):
    return make_staged_image(data, **overrides)


def replaced(image, data: bytes):
    return replace(
        image,
        attempt=image.attempt + 1,
        opener=lambda: io.BytesIO(data),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def requests_to(box: BoxServer, method: str, prefix: str) -> list:
    return [r for r in box.requests if r.method == method and r.path.startswith(prefix)]


class BoxTarget(ContractTarget):
    def __init__(self, box: BoxServer) -> None:
        self.box = box

    def backend(self) -> BoxBackend:
        return box_backend(self.box.grant())

    def failing_backend(self) -> BoxBackend:
        token = self.box.grant()
        self.box.failing_tokens.add(token["access_token"])
        return box_backend(token)

    def backend_with_refused_credentials(self) -> BoxBackend:
        # Tokens Box never issued: the access token is refused (401), and so is its refresh (invalid_grant).
        return box_backend({"access_token": "forged", "refresh_token": "forged", "expires_at": time.time() + 3600})

    def delivered(self) -> dict[str, bytes]:
        return self.box.files()

    def location(self, image, path: str) -> str:
        return path


class TestBoxBackendContract(BackendContract):
    rewritable_secret = ("token", "refresh_token")

    @pytest.fixture
    def target(self, box) -> BoxTarget:
        return BoxTarget(box)


def test_box_is_registered_and_its_endpoints_come_from_settings(box, settings):
    assert backend_class("box") is BoxBackend
    assert BoxBackend.endpoint("upload_base") == f"{box.url}/api"
    settings.APERTUR_OAUTH = {}
    assert BoxBackend.endpoint("token_url") == "https://api.box.com/oauth2/token"
    assert BoxBackend.endpoint("upload_base") == "https://upload.box.com/api"
    assert BoxBackend.is_configured() is False


def test_a_small_image_is_one_multipart_upload_box_checks_by_sha1(box):
    data = noisy_jpeg((320, 240))
    image = image_of(data)

    receipt = box_backend(box.grant()).deliver(image, rendered_path(image))

    [upload] = requests_to(box, "POST", "/api/2.0/files/content")
    assert upload.headers["content-md5"] == hashlib.sha1(data).hexdigest()
    assert requests_to(box, "POST", "/api/2.0/files/upload_sessions") == []
    stored = box.file(rendered_path(image))
    assert hashlib.sha256(stored.content).hexdigest() == image.sha256
    assert receipt.remote_reference == f"box:file/{stored.id}"


def test_a_large_image_goes_up_in_parts_with_digests_and_is_committed(chunked):
    data = noisy_jpeg((640, 480))
    assert len(data) > 3 * SMALL_PART
    image = image_of(data)

    box_backend(chunked.grant()).deliver(image, rendered_path(image))

    parts = requests_to(chunked, "PUT", "/api/2.0/files/upload_sessions/")
    assert len(parts) == math.ceil(len(data) / SMALL_PART)
    assert all(part.headers["digest"].startswith("sha=") for part in parts)
    assert parts[-1].headers["content-range"] == f"bytes {(len(parts) - 1) * SMALL_PART}-{len(data) - 1}/{len(data)}"
    assert len([r for r in chunked.requests if r.path.endswith("/commit")]) == 1
    assert requests_to(chunked, "POST", "/api/2.0/files/content") == []
    assert hashlib.sha256(chunked.file(rendered_path(image)).content).hexdigest() == image.sha256


def test_a_retried_large_image_becomes_a_new_version_of_the_same_file(chunked):
    first, second = noisy_jpeg((640, 480)), noisy_jpeg((640, 480))
    image = image_of(first)
    backend = box_backend(chunked.grant())
    backend.deliver(image, rendered_path(image))
    file_id = chunked.file(rendered_path(image)).id

    backend.deliver(replaced(image, second), rendered_path(image))

    assert chunked.files() == {rendered_path(image): second}
    assert chunked.file(rendered_path(image)).versions == 2
    assert requests_to(chunked, "POST", f"/api/2.0/files/{file_id}/upload_sessions")


def test_a_retried_small_image_becomes_a_new_version_of_the_same_file(box):
    first, second = noisy_jpeg((160, 120)), noisy_jpeg((160, 120))
    image = image_of(first)
    backend = box_backend(box.grant())
    backend.deliver(image, rendered_path(image))
    file_id = box.file(rendered_path(image)).id

    backend.deliver(replaced(image, second), rendered_path(image))

    assert box.files() == {rendered_path(image): second}
    assert box.file(rendered_path(image)).id == file_id
    assert requests_to(box, "POST", f"/api/2.0/files/{file_id}/content")


def test_a_retry_asks_box_first_so_the_bytes_go_once(box):
    image = image_of(noisy_jpeg((160, 120)))
    box_backend(box.grant()).deliver(image, rendered_path(image))
    file_id = box.file(rendered_path(image)).id
    box.requests.clear()

    box_backend(box.grant()).deliver(replaced(image, noisy_jpeg((160, 120))), rendered_path(image))

    assert [(r.method, r.path) for r in box.requests if "files" in r.path] == [
        ("OPTIONS", "/2.0/files/content"),
        ("POST", f"/api/2.0/files/{file_id}/content"),
    ]


def test_folders_are_created_once_and_their_ids_reused(box):
    backend = box_backend(box.grant())
    images = [image_of(noisy_jpeg((160, 120)), index=index, image_id=f"img_{index}") for index in range(3)]

    for image in images:
        backend.deliver(image, rendered_path(image))

    assert len(requests_to(box, "POST", "/2.0/folders")) == 1
    assert sorted(box.files()) == sorted(rendered_path(image) for image in images)


def test_the_path_goes_below_the_configured_folder(box):
    backend = box_backend(box.grant())
    image = image_of(noisy_jpeg((160, 120)))
    backend.deliver(image, "Clients/x.jpg")  # makes the folder "Clients" in All Files
    folder_id = box.folder_id("Clients")

    box_backend(box.grant(), folderId=folder_id).deliver(image, rendered_path(image))

    assert f"Clients/{rendered_path(image)}" in box.files()


def test_a_folder_made_elsewhere_is_found_from_the_conflict_not_duplicated(box):
    image = image_of(noisy_jpeg((160, 120)))
    box_backend(box.grant()).deliver(image_of(noisy_jpeg((160, 120)), image_id="img_other"), rendered_path(image))

    box_backend(box.grant()).deliver(image, rendered_path(image))  # a new backend: nothing cached

    assert len([item for item in box.items.values() if item.type == "folder"]) == 2  # All Files + the session's


def test_a_folder_deleted_behind_our_back_is_recreated(box):
    backend = box_backend(box.grant())
    first = image_of(noisy_jpeg((160, 120)), image_id="img_first")
    backend.deliver(first, rendered_path(first))
    box.delete(box.folder_id(first.session_id))
    second = image_of(noisy_jpeg((160, 120)), image_id="img_second", index=4)

    backend.deliver(second, rendered_path(second))

    assert list(box.files()) == [rendered_path(second)]
    assert len(requests_to(box, "POST", "/2.0/folders")) == 2


def test_a_folder_where_the_image_should_go_fails_for_good(box):
    image = image_of(noisy_jpeg((160, 120)))
    *folders, name = rendered_path(image).split("/")
    box_backend(box.grant()).deliver(image_of(noisy_jpeg((160, 120))), f"{folders[0]}/{name}/x.jpg")

    with pytest.raises(DeliveryError) as raised:
        box_backend(box.grant()).deliver(image, rendered_path(image))

    assert raised.value.permanent is True
    assert "folder" in raised.value.message


def test_an_expired_token_is_refreshed_first_and_the_rotated_refresh_token_saved(box, owner):
    token = box.grant(access_expires_in=30)  # inside the refresh-ahead margin
    destination = stored_destination(box_backend(token), owner.project)
    image = image_of(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    saved = Destination.objects.get(pk=destination.pk).secrets["token"]
    assert saved["refresh_token"] != token["refresh_token"]
    assert saved["refresh_token"] in box.refresh_tokens
    assert token["refresh_token"] not in box.refresh_tokens  # Box's refresh tokens are single use
    assert box.refreshes == 1
    assert rendered_path(image) in box.files()


def test_a_401_before_expiry_refreshes_once_and_repeats_the_call(box, owner):
    token = box.grant()
    box.access_tokens.pop(token["access_token"])  # Box forgot it (a password change, an admin's revoke)
    destination = stored_destination(box_backend(token), owner.project)
    image = image_of(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert box.refreshes == 1
    assert rendered_path(image) in box.files()


def test_two_workers_refreshing_at_once_keep_one_rotated_token(box, transactional_db):
    destination = stored_destination(box_backend(box.grant(access_expires_in=0)), make_persona("box2").project)
    box.token_gate.clear()
    errors: list[Exception] = []

    def deliver(index: int) -> None:
        try:
            image = image_of(noisy_jpeg((160, 120)), image_id=f"img_w{index}", index=index)
            backend_for(Destination.objects.get(pk=destination.pk)).deliver(image, rendered_path(image))
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver, args=(index,)) for index in range(2)]
    for worker in workers:
        worker.start()
    assert box.token_requests_arrived.acquire(timeout=10)  # one worker is refreshing; the other waits on the lock
    box.token_gate.set()
    for worker in workers:
        worker.join(30)

    assert errors == []
    assert box.refreshes == 1
    assert Destination.objects.get(pk=destination.pk).secrets["token"]["refresh_token"] in box.refresh_tokens
    assert len(box.files()) == 2


def test_a_revoked_grant_needs_reconnect_and_flags_the_destination(box, owner):
    destination = stored_destination(box_backend(box.grant(access_expires_in=0)), owner.project)
    box.revoke_everything()
    image = image_of(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.permanent is False
    assert Destination.objects.get(pk=destination.pk).needs_reconnect is True
    assert box.files() == {}


def test_a_429_is_transient_and_carries_boxs_retry_after(box):
    box.fail_next(r"POST /api/2\.0/files/content", 429, retry_after=42)
    image = image_of(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        box_backend(box.grant()).deliver(image, rendered_path(image))

    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    assert raised.value.http_status == 429
    assert raised.value.retry_after == 42
    assert len(requests_to(box, "POST", "/api/2.0/files/content")) == 1  # one call per attempt: no SDK retries


def test_a_429_whose_retry_after_is_an_http_date_waits_until_then(box):
    moment = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    box.fail_next(r"POST /api/2\.0/files/content", 429, retry_after=moment)
    image = image_of(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        box_backend(box.grant()).deliver(image, rendered_path(image))

    assert raised.value.permanent is False
    assert 70 <= raised.value.retry_after <= 90


def test_a_5xx_is_transient_and_the_next_attempt_delivers(box):
    box.fail_next(r"POST /2\.0/folders", 503)
    image = image_of(noisy_jpeg((160, 120)))
    backend = box_backend(box.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))
    assert (raised.value.permanent, raised.value.http_status) == (False, 503)

    backend.deliver(image, rendered_path(image))
    assert box.files() == {rendered_path(image): image.open().read()}


def test_a_connection_dropped_mid_part_fails_the_attempt_and_a_retry_delivers_once(chunked):
    chunked.fail_next(r"PUT /api/2\.0/files/upload_sessions/", drop=True)
    data = noisy_jpeg((640, 480))
    image = image_of(data)
    backend = box_backend(chunked.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))
    assert raised.value.permanent is False
    assert "could not reach Box" in raised.value.message
    assert chunked.sessions == {}  # the broken session was aborted

    backend.deliver(replaced(image, data), rendered_path(image))
    assert chunked.files() == {rendered_path(image): data}


def test_a_commit_box_is_still_processing_is_repeated(chunked):
    chunked.commit_pending = 1
    image = image_of(noisy_jpeg((640, 480)))

    box_backend(chunked.grant()).deliver(image, rendered_path(image))

    assert len([r for r in chunked.requests if r.path.endswith("/commit")]) == 2
    assert hashlib.sha256(chunked.file(rendered_path(image)).content).hexdigest() == image.sha256


def test_the_folder_id_must_be_a_box_id():
    with pytest.raises(ValueError, match="Box folder id"):
        BoxConfig.model_validate({"folderId": "../etc"})
    assert BoxConfig.model_validate({}).folderId == "0"


def test_the_local_box_authorises_with_a_code_once_and_revokes(box):
    """The endpoints the connect flow uses: authorise answers with a redirect carrying a code and the state, the
    code is good once, revoking the refresh token ends the grant."""
    redirect_uri = "http://testserver/destinations/oauth/box/callback"
    answer = requests.get(
        box.settings()["authorize_url"],
        params={"response_type": "code", "client_id": box.client_id, "redirect_uri": redirect_uri, "state": "s1"},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    assert query["state"] == ["s1"]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "client_id": box.client_id,
        "client_secret": box.client_secret,
        "redirect_uri": redirect_uri,
    }

    tokens = requests.post(box.settings()["token_url"], data=form, timeout=5).json()
    replayed = requests.post(box.settings()["token_url"], data=form, timeout=5)
    revoked = requests.post(
        box.settings()["revoke_url"],
        data={"client_id": box.client_id, "client_secret": box.client_secret, "token": tokens["refresh_token"]},
        timeout=5,
    )

    assert tokens["refresh_token"] and tokens["expires_in"] == 3600
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_grant")
    assert revoked.status_code == 200
    assert tokens["refresh_token"] not in box.refresh_tokens
    assert not box.token_valid(tokens["access_token"])  # Box revokes the whole grant, whichever token is sent


def box_session(api_client, persona, token: dict) -> tuple[str, Destination]:
    destination = stored_destination(box_backend(token), persona.project)
    response = api_client.post(
        "/api/v1/upload-sessions", {"destination_ids": [str(destination.pk)]}, format="json", **persona.auth
    )
    assert response.status_code == 201, response.content
    return response.json()["id"], destination


def upload_image(api_client, session_id: str, data: bytes) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api_client.post(
        f"/api/v1/upload/{session_id}/images",
        {"file": SimpleUploadedFile("photo.jpg", data, "image/jpeg")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_the_engine_waits_as_long_as_boxs_retry_after_before_the_next_attempt(box, worker, api_client, settings):
    from delivery.models import Delivery, DeliveryAttempt
    from tests.factories import image_bytes, wait_until

    settings.APERTUR_RETRY_DELAYS = [0.1, 0.1, 0.1, 0.1, 0.1]
    box.fail_next(r"POST /api/2\.0/files/content", 429, retry_after=2)
    persona = make_persona("box429")
    session_id, _ = box_session(api_client, persona, box.grant())
    data = image_bytes()

    upload_image(api_client, session_id, data)
    delivery = wait_until(lambda: Delivery.objects.filter(status="delivered").first(), timeout=20)

    first, second = DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    assert (first.outcome, first.http_status) == ("failed", 429)
    assert (second.started_at - first.finished_at).total_seconds() >= 2  # not the schedule's 0.1 s
    assert list(box.files().values()) == [data]


def test_a_revoked_grant_waits_for_a_reconnect_then_the_delivery_completes(box, worker, api_client, settings):
    from delivery.models import Delivery
    from tests.factories import image_bytes, wait_until

    settings.APERTUR_RETRY_DELAYS = [1.0] * 5
    persona = make_persona("boxreconnect")
    session_id, destination = box_session(api_client, persona, box.grant(access_expires_in=0))
    box.revoke_everything()

    upload_image(api_client, session_id, image_bytes())
    waiting = wait_until(lambda: Delivery.objects.filter(status="pending", attempts__gte=1).first())
    assert "invalid_grant" in waiting.last_error
    assert Destination.objects.get(pk=destination.pk).needs_reconnect is True

    # What the connect flow's reconnect stores: a fresh token set for the same destination.
    destination = Destination.objects.get(pk=destination.pk)
    destination.secrets = {**destination.secrets, "token": box.grant()}
    destination.needs_reconnect = False
    destination.save(update_fields=["secrets", "needs_reconnect"])

    wait_until(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=20)
    assert len(box.files()) == 1


def test_the_api_edits_the_folder_but_never_the_token(box, api_client, owner):
    token = box.grant()
    destination = stored_destination(box_backend(token), owner.project)
    url = f"/api/v1/projects/{owner.project.pk}/destinations/{destination.pk}"

    moved = api_client.patch(url, {"config": {"folderId": "12345"}}, format="json", **owner.auth)
    refused = api_client.patch(url, {"config": {"folderId": "Photos"}}, format="json", **owner.auth)
    forged = api_client.patch(url, {"config": {"token": {"access_token": "x"}}}, format="json", **owner.auth)

    assert moved.status_code == 200, moved.content
    assert moved.json()["config"]["folderId"] == "12345"
    assert token["access_token"] not in moved.content.decode()  # the token is a secret: masked
    assert token["refresh_token"] not in moved.content.decode()
    assert (refused.status_code, list(refused.json()["fields"])) == (400, ["config.folderId"])
    assert (forged.status_code, list(forged.json()["fields"])) == (400, ["config.token"])
    assert Destination.objects.get(pk=destination.pk).secrets["token"]["access_token"] != "x"


@pytest.mark.parametrize("header", ["inf", "999999999999", "1e300", "-5"])
def test_a_hostile_retry_after_never_breaks_the_schedule(box, api_client, transactional_db, settings, header):
    """A Retry-After that is not a sane number of seconds is ignored or cut to an hour: the attempt is recorded
    and the delivery waits at most an hour (an overflow here once left it stuck in `delivering`)."""
    from delivery import services
    from delivery.models import Delivery, DeliveryAttempt

    settings.APERTUR_RETRY_DELAYS = [1.0] * 5
    box.fail_next(r"POST /api/2\.0/files/content", 429, retry_after=header)
    session_id, _ = box_session(api_client, make_persona("hostile"), box.grant())
    upload_image(api_client, session_id, image_bytes())
    delivery = Delivery.objects.get()

    services.delivery_execute(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert list(DeliveryAttempt.objects.values_list("outcome", flat=True)) == ["failed"]
    wait = (delivery.next_retry_at - timezone.now()).total_seconds()
    assert 0 < wait <= 3600
