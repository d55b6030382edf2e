"""The dropbox destination: the official SDK against the local Dropbox (tests/servers/dropbox.py) — the contract,
files/upload and the upload-session path, parent folders, retries that replace, token refresh and rotation,
reconnect, rate limits and server errors."""

import base64
import email.utils
import hashlib
import io
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection

from apertur.deadlines import Deadline
from delivery.models import Delivery
from destinations.attempts import backend_for
from destinations.backends.base import AttemptContext, DeliveryError, MemorySecretsStore
from destinations.backends.dropbox import DropboxBackend, DropboxConfig
from destinations.models import Destination
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    make_staged_image,
    rendered_path,
    stored_destination,
)
from tests.destinations.helpers import create_session, upload_image
from tests.factories import make_persona, noisy_jpeg, wait_until
from tests.servers.dropbox import DropboxServer, content_hash


def dropbox_backend(token: dict, context: AttemptContext | None = None, **config) -> DropboxBackend:
    return DropboxBackend(DropboxConfig.model_validate({"token": token, **config}), context)


class DropboxTarget(ContractTarget):
    def __init__(self, server: DropboxServer) -> None:
        self.server = server

    def backend(self) -> DropboxBackend:
        return dropbox_backend(self.server.tokens.grant())

    def failing_backend(self) -> DropboxBackend:
        self.server.fail("files/upload", status=500)
        return self.backend()

    def backend_with_refused_credentials(self) -> DropboxBackend:
        # A token set Dropbox never issued: the access token is refused (invalid_access_token), so is its refresh.
        return dropbox_backend({"access_token": "forged", "refresh_token": "forged", "expires_at": time.time() + 3600})

    def delivered(self) -> dict[str, bytes]:
        return self.server.delivered()

    def location(self, image, path: str) -> str:
        return f"/Apps/Apertur/{path}"


class TestDropboxBackendContract(BackendContract):
    rewritable_secret = ("token", "refresh_token")

    @pytest.fixture
    def target(self, dropbox_server) -> DropboxTarget:
        return DropboxTarget(dropbox_server)


@pytest.fixture
def large_file_path(settings):
    """Images above 32 KiB go through an upload session, in 24 KiB chunks."""
    settings.APERTUR_DROPBOX_UPLOAD_THRESHOLD_BYTES = 32 * 1024
    settings.APERTUR_DROPBOX_CHUNK_SIZE_BYTES = 24 * 1024


def large_image(**overrides):
    data = noisy_jpeg((400, 300))
    assert len(data) > 3 * 24 * 1024  # a start, appends and a finish
    return make_staged_image(data, **overrides)


def test_an_image_up_to_the_threshold_is_one_files_upload_into_the_default_folder(dropbox_server):
    image = make_staged_image(noisy_jpeg((320, 240)))
    backend = dropbox_backend(dropbox_server.tokens.grant())
    path = backend.remote_path(image)

    receipt = backend.deliver(image, path)

    assert path == f"{image.session_id}/3_{image.image_id}.jpg"
    assert dropbox_server.calls == ["files/upload"]
    [(stored_path, data)] = dropbox_server.delivered().items()
    assert stored_path == f"/Apps/Apertur/{path}"
    assert hashlib.sha256(data).hexdigest() == image.sha256
    assert receipt.remote_reference == f"dropbox:/Apps/Apertur/{path}"


def test_a_larger_image_goes_through_an_upload_session_in_chunks(dropbox_server, large_file_path):
    image = large_image()
    backend = dropbox_backend(dropbox_server.tokens.grant(), folderPath="/Claims")

    backend.deliver(image, backend.remote_path(image))

    calls = dropbox_server.calls
    assert calls[0] == "files/upload_session/start"
    assert calls[-1] == "files/upload_session/finish"
    assert set(calls[1:-1]) == {"files/upload_session/append_v2"}
    assert len(calls) == -(-image.size_bytes // (24 * 1024))  # one request per chunk
    [(stored_path, data)] = dropbox_server.delivered().items()
    assert stored_path == f"/Claims/{image.session_id}/3_{image.image_id}.jpg"
    assert hashlib.sha256(data).hexdigest() == image.sha256
    assert dropbox_server.sessions == {}  # finished, not left open


def test_every_request_carries_the_content_hash_dropbox_verifies(dropbox_server, large_file_path, monkeypatch):
    # The local Dropbox refuses a body whose content_hash differs: corrupt one chunk on its way out.
    from dropbox import dropbox_client

    original = dropbox_client._DropboxTransport.request_json_string

    def corrupting(self, host, route, style, arg, auth, body, **kwargs):
        if route == "files/upload_session/append_v2":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        return original(self, host, route, style, arg, auth, body, **kwargs)

    monkeypatch.setattr(dropbox_client._DropboxTransport, "request_json_string", corrupting)
    image = large_image()
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert "content_hash_mismatch" in raised.value.message
    assert raised.value.permanent is False
    assert dropbox_server.delivered() == {}


def test_the_server_hashes_content_as_dropbox_documents():
    from dropbox.content_hash import DropboxContentHasher

    data = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # more than one 4 MiB block
    hasher = DropboxContentHasher()
    hasher.update(data)

    assert content_hash(data) == hasher.hexdigest()


def test_missing_folders_are_made_by_the_upload_and_reused_by_the_next_image(dropbox_server):
    backend = dropbox_backend(dropbox_server.tokens.grant())
    first, second = (make_staged_image(noisy_jpeg((160, 120)), index=n, image_id=f"img_F{n}") for n in (0, 1))

    for image in (first, second):
        backend.deliver(image, backend.remote_path(image))

    folder = f"/Apps/Apertur/{first.session_id}"
    assert folder.lower() in dropbox_server.folders
    assert dropbox_server.calls == ["files/upload", "files/upload"]  # no folder calls, no lookups
    assert sorted(dropbox_server.delivered()) == sorted(
        f"/Apps/Apertur/{backend.remote_path(i)}" for i in (first, second)
    )


def test_a_folder_deleted_behind_our_back_is_made_again(dropbox_server):
    backend = dropbox_backend(dropbox_server.tokens.grant())
    first, second = (make_staged_image(noisy_jpeg((160, 120)), index=n, image_id=f"img_D{n}") for n in (0, 1))
    backend.deliver(first, backend.remote_path(first))
    dropbox_server.delete("/Apps/Apertur")

    backend.deliver(second, backend.remote_path(second))

    assert f"/apps/apertur/{second.session_id}".lower() in dropbox_server.folders
    assert list(dropbox_server.delivered()) == [f"/Apps/Apertur/{backend.remote_path(second)}"]


def test_a_connection_dropped_mid_chunk_fails_the_attempt_and_the_retry_leaves_one_file(
    dropbox_server, large_file_path
):
    image = large_image()
    backend = dropbox_backend(dropbox_server.tokens.grant())
    path = backend.remote_path(image)
    dropbox_server.fail("files/upload_session/append_v2", drop=True)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert raised.value.permanent is False
    assert "connection lost during files/upload_session/append_v2" in raised.value.message
    assert dropbox_server.delivered() == {}

    backend.deliver(replace(image, attempt=2), path)

    assert dropbox_server.delivered() == {f"/Apps/Apertur/{path}": image.open().read()}


class TrickleStream(io.BytesIO):
    """A staged stream that returns fewer bytes than asked, as a staging bucket's file may."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(min(size, 1000) if size and size > 0 else 1000)


def test_short_reads_from_staging_still_send_every_byte(dropbox_server, large_file_path):
    data = noisy_jpeg((400, 300))
    image = make_staged_image(data, opener=lambda: TrickleStream(data))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    backend.deliver(image, backend.remote_path(image))

    [stored] = dropbox_server.delivered().values()
    assert hashlib.sha256(stored).hexdigest() == image.sha256


@pytest.mark.parametrize("size", [20 * 1024, 100 * 1024], ids=["files/upload", "upload session"])
def test_a_staged_image_shorter_than_recorded_is_not_committed(dropbox_server, large_file_path, size):
    data = noisy_jpeg((400, 300))[:size]
    image = make_staged_image(data, size_bytes=size + 1)
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert "ended before its recorded size" in raised.value.message
    assert dropbox_server.delivered() == {}


def test_a_retry_through_the_session_path_replaces_the_file(dropbox_server, large_file_path):
    image = large_image()
    backend = dropbox_backend(dropbox_server.tokens.grant())
    path = backend.remote_path(image)
    backend.deliver(image, path)
    first_id = dropbox_server.files[f"/Apps/Apertur/{path}".lower()].id
    retried = noisy_jpeg((400, 300))

    backend.deliver(replace(image, attempt=2, opener=lambda: io.BytesIO(retried), size_bytes=len(retried)), path)

    assert dropbox_server.delivered() == {f"/Apps/Apertur/{path}": retried}
    assert dropbox_server.files[f"/Apps/Apertur/{path}".lower()].id == first_id  # the same file, a new revision


def test_the_test_image_goes_below_the_folder_path(dropbox_server):
    backend = dropbox_backend(dropbox_server.tokens.grant(), folderPath="Claims/2026")

    result = backend.check()

    assert result.success is True, result.error
    [stored_path] = dropbox_server.delivered()
    assert stored_path.startswith("/Claims/2026/apertur-test/") and stored_path.endswith(".png")
    assert stored_path in result.message


def test_a_folder_where_the_file_should_go_fails_for_good_with_dropbox_s_reason(dropbox_server):
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())
    path = backend.remote_path(image)
    dropbox_server.folders[f"/Apps/Apertur/{path}".lower()] = f"/Apps/Apertur/{path}"

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert raised.value.permanent is True
    assert "path/conflict/folder" in raised.value.message
    assert dropbox_server.delivered() == {}


@pytest.mark.parametrize("reason", ["too_many_requests", "too_many_write_operations"])
def test_a_rate_limit_is_transient_and_carries_dropbox_s_wait(dropbox_server, reason):
    dropbox_server.fail("files/upload", status=429, retry_after=42, reason=reason)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert raised.value.permanent is False
    assert raised.value.needs_reconnect is False
    assert raised.value.http_status == 429
    assert raised.value.retry_after == 42
    assert reason in raised.value.message
    assert dropbox_server.calls == []  # one request, not the SDK's own retry loop


def test_a_plain_text_rate_limit_takes_its_wait_from_retry_after(dropbox_server):
    dropbox_server.fail("files/upload", status=429, retry_after=17, json_body=False)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert raised.value.retry_after == 17
    assert raised.value.permanent is False
    assert "too_many_requests" in raised.value.message


def test_a_server_error_is_transient_and_not_retried_within_the_attempt(dropbox_server):
    dropbox_server.fail("files/upload", status=503)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert raised.value.permanent is False
    assert raised.value.http_status == 503
    assert dropbox_server.failures == [] and dropbox_server.calls == []


def test_the_attempt_deadline_bounds_a_stalled_dropbox(dropbox_server):
    dropbox_server.fail("files/upload", status=500, delay=10)
    image = make_staged_image(noisy_jpeg((160, 120)))
    token = dropbox_server.tokens.grant()
    backend = dropbox_backend(token, AttemptContext(secrets=MemorySecretsStore({"token": token}), deadline=Deadline(1)))
    started = time.monotonic()

    with pytest.raises(DeliveryError):
        backend.deliver(image, backend.remote_path(image))

    assert time.monotonic() - started < 5


# Tokens.


def stored_dropbox(server: DropboxServer, project, **token_changes) -> Destination:
    return stored_destination(dropbox_backend({**server.tokens.grant(), **token_changes}), project)


def stored_token(destination: Destination) -> dict:
    return Destination.objects.get(pk=destination.pk).secrets["token"]


def test_a_token_close_to_expiry_is_refreshed_and_the_rotated_refresh_token_saved(dropbox_server, owner):
    dropbox_server.tokens.rotate_refresh_tokens = True
    destination = stored_dropbox(dropbox_server, owner.project, expires_at=time.time() + 30)
    before = stored_token(destination)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend = backend_for(destination)
    backend.deliver(image, backend.remote_path(image))

    after = stored_token(destination)
    assert dropbox_server.tokens.refreshes == 1
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["refresh_token"] in dropbox_server.tokens.refresh_tokens
    assert before["refresh_token"] not in dropbox_server.tokens.refresh_tokens
    assert after["expires_at"] > time.time() + 14000
    assert len(dropbox_server.delivered()) == 1


def test_an_expired_access_token_answer_refreshes_once_and_repeats_the_request(dropbox_server, owner):
    destination = stored_dropbox(dropbox_server, owner.project)
    dropbox_server.expire(stored_token(destination)["access_token"])  # Dropbox ended it early
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend = backend_for(destination)
    backend.deliver(image, backend.remote_path(image))

    assert dropbox_server.tokens.refreshes == 1
    assert dropbox_server.calls == ["files/upload"]  # the refused request never reached the route
    assert stored_token(destination)["refresh_token"] in dropbox_server.tokens.refresh_tokens
    assert len(dropbox_server.delivered()) == 1


def test_a_token_expiring_mid_session_is_refreshed_and_the_session_goes_on(dropbox_server, owner, large_file_path):
    destination = stored_dropbox(dropbox_server, owner.project)
    dropbox_server.fail("files/upload_session/append_v2", status=401)
    image = large_image()

    backend = backend_for(destination)
    backend.deliver(image, backend.remote_path(image))

    assert dropbox_server.tokens.refreshes == 1
    assert dropbox_server.calls.count("files/upload_session/start") == 1
    assert dropbox_server.delivered() == {f"/Apps/Apertur/{backend.remote_path(image)}": image.open().read()}


def test_two_workers_with_an_expired_token_refresh_once_and_both_deliver(dropbox_server, transactional_db):
    dropbox_server.tokens.rotate_refresh_tokens = True
    destination = stored_dropbox(dropbox_server, make_persona("racer").project, expires_at=time.time() - 10)
    dropbox_server.tokens.token_gate.clear()  # hold refreshes at Dropbox while both workers are under way
    images = [make_staged_image(noisy_jpeg((160, 120)), image_id=f"img_RACE{number}") for number in range(2)]
    errors: list[Exception] = []

    def deliver(image) -> None:
        try:
            backend = backend_for(Destination.objects.get(pk=destination.pk))
            backend.deliver(image, backend.remote_path(image))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver, args=(image,)) for image in images]
    for worker in workers:
        worker.start()
    assert dropbox_server.tokens.token_requests_arrived.acquire(timeout=10), "no refresh reached Dropbox"
    # A second refresh would arrive within milliseconds without the lock; an absence cannot be awaited.
    second_refresh_arrived = dropbox_server.tokens.token_requests_arrived.acquire(timeout=1.5)
    dropbox_server.tokens.token_gate.set()
    for worker in workers:
        worker.join(30)

    assert errors == []
    assert second_refresh_arrived is False
    assert dropbox_server.tokens.refreshes == 1
    assert len(dropbox_server.delivered()) == 2
    assert stored_token(destination)["refresh_token"] in dropbox_server.tokens.refresh_tokens


def test_a_revoked_grant_needs_reconnect_and_flags_the_destination(dropbox_server, owner):
    destination = stored_dropbox(dropbox_server, owner.project, expires_at=time.time() - 10)
    dropbox_server.tokens.revoke_everything()
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend = backend_for(destination)
    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.permanent is False
    assert "invalid_grant" in raised.value.message
    destination.refresh_from_db()
    assert destination.needs_reconnect is True
    assert dropbox_server.delivered() == {}


def test_revoke_grant_ends_the_access_and_refresh_tokens_at_dropbox(dropbox_server):
    token = dropbox_server.tokens.grant()
    backend = dropbox_backend(token)

    backend.revoke_grant()

    assert dropbox_server.calls == ["auth/token/revoke"]
    assert token["refresh_token"] not in dropbox_server.tokens.refresh_tokens
    assert dropbox_server.token_refusal(token["access_token"]) == "invalid_access_token"
    backend.revoke_grant()  # a grant already gone is revoked as far as we are concerned


def test_a_waiting_delivery_completes_once_the_destination_is_reconnected(dropbox_server, api_client, worker, settings):
    settings.APERTUR_RETRY_DELAYS = [0.3] * 5
    persona = make_persona("reconnect")
    destination = stored_dropbox(dropbox_server, persona.project, expires_at=time.time() - 10)
    dropbox_server.tokens.revoke_everything()
    session = create_session(api_client, persona, [str(destination.pk)])
    upload_image(api_client, session["id"], noisy_jpeg((160, 120)))

    wait_until(lambda: Destination.objects.get(pk=destination.pk).needs_reconnect)
    # What the connect flow's callback stores on Reconnect: a fresh grant, and the flag cleared.
    Destination.objects.filter(pk=destination.pk).update(
        secrets={"token": dropbox_server.tokens.grant()}, needs_reconnect=False
    )

    wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 1, timeout=20)
    [data] = dropbox_server.delivered().values()
    assert data.startswith(b"\xff\xd8")


def test_a_rate_limited_delivery_is_not_retried_before_dropbox_s_wait(dropbox_server, api_client, worker, settings):
    settings.APERTUR_RETRY_DELAYS = [0.1] * 5
    persona = make_persona("patient")
    destination = stored_dropbox(dropbox_server, persona.project)
    dropbox_server.fail("files/upload", status=429, retry_after=600)
    session = create_session(api_client, persona, [str(destination.pk)])
    upload_image(api_client, session["id"], noisy_jpeg((160, 120)))

    delivery = wait_until(lambda: Delivery.objects.filter(status="pending", last_error__contains="rate limit").first())

    assert delivery.next_retry_at.timestamp() >= time.time() + 590


# The local Dropbox's OAuth endpoints, as the connect flow uses them.


def test_authorize_redirects_back_with_a_code_and_the_state(dropbox_server):
    answer = requests.get(
        f"{dropbox_server.url}/oauth2/authorize",
        params={
            "client_id": dropbox_server.client_id,
            "response_type": "code",
            "redirect_uri": "http://testserver/destinations/oauth/dropbox/callback",
            "state": "s-123",
            "token_access_type": "offline",
        },
        allow_redirects=False,
        timeout=5,
    )

    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "http://testserver/destinations/oauth/dropbox/callback"
    )
    query = parse_qs(location.query)
    assert query["state"] == ["s-123"] and query["code"][0]


def authorization_code(server: DropboxServer, **params) -> str:
    answer = requests.get(
        f"{server.url}/oauth2/authorize",
        params={"client_id": server.client_id, "response_type": "code", "redirect_uri": "http://cb/", **params},
        allow_redirects=False,
        timeout=5,
    )
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def test_a_code_with_pkce_is_exchanged_once_for_an_offline_grant_that_delivers(dropbox_server):
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = authorization_code(
        dropbox_server, code_challenge=challenge, code_challenge_method="S256", token_access_type="offline"
    )
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://cb/"}
    form |= {"client_id": dropbox_server.client_id, "code_verifier": verifier}

    exchanged = requests.post(f"{dropbox_server.url}/oauth2/token", data=form, timeout=5)
    replayed = requests.post(f"{dropbox_server.url}/oauth2/token", data=form, timeout=5)

    assert exchanged.status_code == 200
    grant = exchanged.json()
    assert grant["token_type"] == "bearer" and grant["refresh_token"] and grant["expires_in"] == 14400
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    token = {"access_token": grant["access_token"], "refresh_token": grant["refresh_token"]}
    image = make_staged_image(noisy_jpeg((160, 120)))
    dropbox_backend(token).deliver(image, rendered_path(image))
    assert len(dropbox_server.delivered()) == 1


def test_a_refused_consent_redirects_back_with_access_denied_and_the_state(dropbox_server):
    dropbox_server.refuse_authorization = True

    answer = requests.get(
        f"{dropbox_server.url}/oauth2/authorize",
        params={"client_id": dropbox_server.client_id, "response_type": "code", "redirect_uri": "http://cb/"}
        | {"state": "s-9"},
        allow_redirects=False,
        timeout=5,
    )

    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s-9"] and "code" not in query


def test_a_wrong_pkce_verifier_is_refused(dropbox_server):
    code = authorization_code(dropbox_server, code_challenge="x" * 43, code_challenge_method="S256")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://cb/"}
    form |= {"client_id": dropbox_server.client_id, "code_verifier": "w" * 64}

    refused = requests.post(f"{dropbox_server.url}/oauth2/token", data=form, timeout=5)

    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_the_backend_declares_what_the_connect_flow_needs(dropbox_server, settings):
    assert DropboxBackend.authorize_params == {"token_access_type": "offline"}
    assert DropboxBackend.supports_pkce is True
    assert DropboxBackend.endpoint("authorize_url") == f"{dropbox_server.url}/oauth2/authorize"
    settings.APERTUR_OAUTH = {}
    assert DropboxBackend.endpoint("token_url") == "https://api.dropboxapi.com/oauth2/token"
    assert DropboxBackend.endpoint("upload_base") == "https://content.dropboxapi.com"
    assert DropboxBackend.is_configured() is False


def test_the_api_refuses_control_characters_in_folder_path(api_client, owner):
    response = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations",
        {"type": "dropbox", "name": "Dropbox", "config": {"folderPath": "/bad\x07folder"}},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 400
    assert "config.folderPath" in response.json()["fields"]


def test_a_destination_created_through_the_api_waits_for_its_connection(api_client, owner, dropbox_server):
    created = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations",
        {"type": "dropbox", "name": "Dropbox", "config": {"folderPath": "/Photos"}},
        format="json",
        **owner.auth,
    )
    assert created.status_code == 201, created.content
    destination = created.json()

    tested = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations/{destination['id']}/test", **owner.auth
    ).json()

    assert destination["config"] == {"folderPath": "/Photos"}
    assert tested["success"] is False
    assert tested["error"] == "dropbox is not connected"
    assert Destination.objects.get(pk=destination["id"]).needs_reconnect is True
    assert dropbox_server.calls == []


@pytest.mark.parametrize("json_body", [False, True])
def test_a_rate_limit_whose_retry_after_is_an_http_date_is_transient_and_waits_until_then(dropbox_server, json_body):
    """The SDK reads Retry-After with int() (a ValueError on a date) and the body's retry_after by its schema (a
    validation error on a string): either way it is Dropbox's answer it could not read, not our path."""
    moment = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    dropbox_server.fail("files/upload", status=429, retry_after=moment, json_body=json_body)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert raised.value.permanent is False
    assert raised.value.http_status == 429
    assert 100 <= raised.value.retry_after <= 120
    backend.deliver(image, backend.remote_path(image))
    assert len(dropbox_server.delivered()) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=utf-8"])
def test_an_expired_token_answer_the_sdk_cannot_read_still_refreshes_the_token(dropbox_server, content_type):
    """The SDK insists on exactly `application/json` for a 401's body; a 401 is a refused token whatever it says."""
    dropbox_server.fail("files/upload", status=401, content_type=content_type)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    backend.deliver(image, backend.remote_path(image))

    assert dropbox_server.tokens.refreshes == 1
    assert len(dropbox_server.delivered()) == 1


def test_a_rate_limit_asking_for_an_absurd_wait_is_an_ordinary_transient_failure(dropbox_server):
    dropbox_server.fail("files/upload", status=429, retry_after="1" + "0" * 400, json_body=False)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = dropbox_backend(dropbox_server.tokens.grant())

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert (raised.value.permanent, raised.value.http_status) == (False, 429)
    assert raised.value.retry_after in (None, 3600)
    assert "inf" not in raised.value.message


def test_disconnecting_while_dropbox_answers_nonsense_still_disconnects(dropbox_server, owner):
    from destinations import oauth_connect
    from tests.destinations.contract import stored_destination

    destination = stored_destination(dropbox_backend(dropbox_server.tokens.grant()), owner.project)
    dropbox_server.fail("auth/token/revoke", status=429, retry_after="1" + "0" * 400, json_body=False)

    outcome = oauth_connect.connect_disconnect(user=owner.user, destination=destination)

    assert not outcome.revoked and outcome.revoke_error
    stored = Destination.objects.get(pk=destination.pk)
    assert "token" not in (stored.secrets or {}) and stored.needs_reconnect
