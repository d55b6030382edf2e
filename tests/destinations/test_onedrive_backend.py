"""The onedrive destination against a local Microsoft identity platform + Graph drive (tests/servers/onedrive.py):
MSAL refreshes the tokens, Graph is called over the outbound gate, both unmodified and pointed there by settings."""

import hashlib
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests
from django.db import connection
from django.utils import timezone

from delivery.models import Delivery
from delivery.services import delivery_execute
from destinations.attempts import backend_for
from destinations.backends import backend_class
from destinations.backends.base import DeliveryError
from destinations.backends.onedrive import CHUNK_ALIGNMENT, OneDriveBackend, OneDriveConfig, onedrive_chunk_size
from destinations.models import Destination
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    make_staged_image,
    rendered_path,
    stored_destination,
)
from tests.destinations.helpers import create_session, upload_image
from tests.destinations.test_destinations_api import assert_no_secret, assert_validation_error, destinations_url
from tests.factories import make_persona, noisy_jpeg, wait_until
from tests.servers.onedrive import DRIVE_ID, OneDriveServer


@pytest.fixture
def drive(onedrive_server, settings) -> OneDriveServer:
    """The server, emptied, with the settings pointing the onedrive type at it."""
    onedrive_server.reset()
    settings.APERTUR_OAUTH = {"onedrive": onedrive_server.settings()}
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(onedrive_server.certificate)
    return onedrive_server


def onedrive_backend(token: dict, **config) -> OneDriveBackend:
    return OneDriveBackend(OneDriveConfig.model_validate({"token": token, **config}))


class OneDriveTarget(ContractTarget):
    def __init__(self, server: OneDriveServer) -> None:
        self.server = server

    def backend(self) -> OneDriveBackend:
        return onedrive_backend(self.server.grant())

    def failing_backend(self) -> OneDriveBackend:
        token = self.server.grant()
        self.server.failing_tokens.add(token["access_token"])  # Graph answers 500 generalException
        return onedrive_backend(token)

    def backend_with_refused_credentials(self) -> OneDriveBackend:
        # Tokens Microsoft never issued: Graph refuses the access token and the token endpoint the refresh token.
        return onedrive_backend({"access_token": "forged", "refresh_token": "forged", "expires_at": time.time() + 3600})

    def delivered(self) -> dict[str, bytes]:
        return self.server.files()

    def location(self, image, path: str) -> str:
        return path


class TestOneDriveBackendContract(BackendContract):
    rewritable_secret = ("token", "refresh_token")

    @pytest.fixture
    def target(self, drive) -> OneDriveTarget:
        return OneDriveTarget(drive)


def stored_drive(server: OneDriveServer, project, *, config: dict | None = None, **token_changes) -> Destination:
    return stored_destination(onedrive_backend({**server.grant(), **token_changes}, **(config or {})), project)


def stored_token(destination: Destination) -> dict:
    return Destination.objects.get(pk=destination.pk).secrets["token"]


def graph_calls(server: OneDriveServer, since: int = 0) -> list[tuple[str, str]]:
    return [(method, path) for method, path in server.requests[since:] if not path.startswith("/common/")]


# --- registration and config ----------------------------------------------------------------------------


def test_the_type_is_registered_with_microsofts_documented_endpoints_and_pkce():
    backend = backend_class("onedrive")

    assert backend is OneDriveBackend
    assert backend.endpoints.authorize_url == "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    assert backend.endpoints.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert backend.endpoints.api_base == "https://graph.microsoft.com/v1.0"
    assert backend.supports_pkce is True
    assert "offline_access" in backend.scopes  # a refresh token is issued only with it
    assert backend.msal_scopes() == ["Files.ReadWrite.All"]  # MSAL adds (and refuses) the reserved ones


def test_images_go_below_the_default_folder_apertur(drive):
    backend = onedrive_backend(drive.grant())
    image = make_staged_image(noisy_jpeg((160, 120)))

    path = backend.remote_path(image)
    receipt = backend.deliver(image, path)

    assert path == f"Apertur/{rendered_path(image)}"
    assert drive.files() == {path: image.open().read()}
    assert receipt.remote_reference.startswith(f"{drive.url}/personal/me/Documents/Apertur/")


def test_a_drive_id_sends_the_image_to_that_drive(drive):
    backend = onedrive_backend(drive.grant(), driveId=DRIVE_ID, folderPath="/Claims/2026")
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend.deliver(image, backend.remote_path(image))

    assert list(drive.files()) == [f"Claims/2026/{rendered_path(image)}"]
    assert all(path.startswith("/v1.0/drives/b%21local-onedrive-drive/") for _, path in graph_calls(drive))


def test_an_unknown_drive_id_fails_for_good_with_graphs_code(drive):
    backend = onedrive_backend(drive.grant(), driveId="b!not-a-drive")
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, backend.remote_path(image))

    assert raised.value.permanent is True
    assert raised.value.message == (
        "OneDrive answered HTTP 404 (itemNotFound) while making the folder 'Apertur' (is driveId right?)"
    )
    assert drive.files() == {}


@pytest.mark.parametrize("config", [{"driveId": "a/b"}, {"driveId": ""}, {"folderPath": "a\x00b"}, {"folder": "x"}])
def test_a_bad_config_is_refused(config):
    with pytest.raises(ValueError):
        OneDriveConfig.model_validate(config)


def test_the_api_edits_the_folder_fields_keeps_the_token_and_never_shows_it(drive, api_client, owner):
    token = drive.grant()
    destination = stored_destination(onedrive_backend(token), owner.project)

    patched = api_client.patch(
        destinations_url(owner, str(destination.pk)),
        {"config": {"folderPath": "/Claims", "driveId": DRIVE_ID}},
        format="json",
        **owner.auth,
    )
    refused = api_client.patch(
        destinations_url(owner, str(destination.pk)),
        {"config": {"driveId": "a/b"}},
        format="json",
        **owner.auth,
    )
    listed = api_client.get(destinations_url(owner), **owner.auth)

    assert patched.status_code == 200, patched.content
    assert patched.json()["config"]["folderPath"] == "/Claims"
    assert_validation_error(
        refused,
        {"config.driveId": ["must be a drive id as Graph gives it (no '/', '?', '#' or control characters)"]},
    )
    for response in (patched, refused, listed):
        assert_no_secret(response, token["access_token"], token["refresh_token"])
    assert stored_token(destination)["refresh_token"] == token["refresh_token"]
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = backend_for(Destination.objects.get(pk=destination.pk))
    backend.deliver(image, backend.remote_path(image))
    assert list(drive.files()) == [f"Claims/{rendered_path(image)}"]


# --- small and large files ------------------------------------------------------------------------------


def test_an_image_up_to_the_threshold_is_one_simple_upload_that_replaces(drive):
    backend = onedrive_backend(drive.grant())
    data = noisy_jpeg((320, 240))
    image = make_staged_image(data)
    path = rendered_path(image)

    backend.deliver(image, path)

    stored = drive.files()[path]
    assert hashlib.sha256(stored).hexdigest() == image.sha256
    assert [call for call in graph_calls(drive) if call[0] == "PUT"] == [
        ("PUT", f"/v1.0/me/drive/items/{drive.item_at(image.session_id).id}:/{path.rsplit('/', 1)[1]}:/content")
    ]
    assert not any("createUploadSession" in path for _, path in drive.requests)


def test_a_larger_image_goes_through_an_upload_session_in_320_kib_aligned_chunks(drive, settings):
    settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = 64 * 1024
    settings.APERTUR_ONEDRIVE_CHUNK_SIZE_BYTES = 400 * 1024  # rounded down to 320 KiB
    data = noisy_jpeg((1400, 1000))
    assert len(data) > 2 * CHUNK_ALIGNMENT  # at least three chunks
    image = make_staged_image(data)
    path = rendered_path(image)
    backend = onedrive_backend(drive.grant())

    backend.deliver(image, path)

    assert hashlib.sha256(drive.files()[path]).hexdigest() == image.sha256
    chunks = [call for call in drive.requests if call[1].startswith("/upload/") and call[0] == "PUT"]
    assert len(chunks) == -(-len(data) // CHUNK_ALIGNMENT)
    assert onedrive_chunk_size() == CHUNK_ALIGNMENT
    assert drive.sessions == {}  # completed, nothing left behind


def test_a_large_image_delivered_again_replaces_the_file(drive, settings):
    settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = 64 * 1024
    backend = onedrive_backend(drive.grant())
    first, second = noisy_jpeg((500, 400)), noisy_jpeg((500, 400))
    path = rendered_path(make_staged_image(first))

    backend.deliver(make_staged_image(first), path)
    backend.deliver(make_staged_image(second, attempt=2), path)

    assert drive.files() == {path: second}  # the server's session default is `fail`: replace was asked for


def test_a_connection_dropped_mid_chunk_is_resumed_from_the_next_expected_range(drive, settings):
    settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = 64 * 1024
    settings.APERTUR_ONEDRIVE_CHUNK_SIZE_BYTES = CHUNK_ALIGNMENT
    data = noisy_jpeg((900, 700))
    image = make_staged_image(data)
    path = rendered_path(image)
    backend = onedrive_backend(drive.grant())
    drive.fail_next("chunk", drop=True)

    backend.deliver(image, path)

    assert drive.files() == {path: data}
    upload_calls = [method for method, call in drive.requests if call.startswith("/upload/")]
    assert upload_calls[:3] == ["PUT", "GET", "PUT"]  # dropped, asked where to go on, sent again


def test_an_upload_session_that_expired_is_a_retryable_failure(drive, settings):
    settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = 64 * 1024
    image = make_staged_image(noisy_jpeg((500, 400)))
    drive.fail_next("chunk", status=404, code="itemNotFound")

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant()).deliver(image, rendered_path(image))

    assert raised.value.permanent is False
    assert drive.files() == {}


def test_a_throttled_chunk_is_a_retryable_failure_carrying_the_wait_and_the_session_is_cancelled(drive, settings):
    settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = 64 * 1024
    image = make_staged_image(noisy_jpeg((500, 400)))
    drive.fail_next("chunk", status=503, code="serviceNotAvailable", retry_after=42)

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant()).deliver(image, rendered_path(image))

    assert raised.value.permanent is False
    assert raised.value.retry_after == 42
    assert "serviceNotAvailable" in raised.value.message
    assert drive.sessions == {}
    assert drive.files() == {}


# --- folders --------------------------------------------------------------------------------------------


def test_folders_are_made_once_and_their_ids_reused(drive):
    backend = onedrive_backend(drive.grant())
    first = make_staged_image(noisy_jpeg((160, 120)))
    second = make_staged_image(noisy_jpeg((160, 120)), index=4, image_id="img_01JCONTRACT0000000000000002")
    backend.deliver(first, backend.remote_path(first))
    already = len(drive.requests)

    backend.deliver(second, backend.remote_path(second))

    assert [method for method, _ in graph_calls(drive, already)] == ["PUT"]
    assert set(drive.files()) == {backend.remote_path(first), backend.remote_path(second)}


def test_a_folder_made_elsewhere_is_found_and_used(drive):
    first_backend, second_backend = onedrive_backend(drive.grant()), onedrive_backend(drive.grant())
    image = make_staged_image(noisy_jpeg((160, 120)))
    first_backend.deliver(image, first_backend.remote_path(image))
    already = len(drive.requests)

    second_backend.deliver(image, second_backend.remote_path(image))

    # Each folder: "make" answers 409 nameAlreadyExists, the look-up by path gives its id.
    assert [method for method, _ in graph_calls(drive, already)] == ["POST", "GET", "POST", "GET", "PUT"]
    assert len(drive.files()) == 1


def test_folder_ids_are_shared_by_the_attempts_of_one_stored_destination(drive, owner):
    destination = stored_drive(drive, owner.project)
    first = make_staged_image(noisy_jpeg((160, 120)))
    second = make_staged_image(noisy_jpeg((160, 120)), index=4, image_id="img_01JCONTRACT0000000000000002")
    backend_for(destination).deliver(first, backend_for(destination).remote_path(first))
    already = len(drive.requests)

    backend = backend_for(destination)  # a later attempt builds a new backend
    backend.deliver(second, backend.remote_path(second))

    assert [method for method, _ in graph_calls(drive, already)] == ["PUT"]


def test_a_folder_deleted_behind_our_back_is_made_again(drive):
    backend = onedrive_backend(drive.grant())
    first = make_staged_image(noisy_jpeg((160, 120)))
    backend.deliver(first, backend.remote_path(first))
    drive.delete("Apertur")
    second = make_staged_image(noisy_jpeg((160, 120)), index=4, image_id="img_01JCONTRACT0000000000000002")

    backend.deliver(second, backend.remote_path(second))

    assert list(drive.files()) == [backend.remote_path(second)]


def test_a_file_where_a_folder_should_be_fails_for_good(drive):
    backend = onedrive_backend(drive.grant())
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend.deliver(image, "blocker")

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, f"blocker/{image.image_id}.jpg")

    assert raised.value.permanent is True
    assert "'blocker'" in raised.value.message


# --- errors ---------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retryable_and_names_the_wait(drive):
    image = make_staged_image(noisy_jpeg((160, 120)))
    drive.fail_next("upload", status=429, code="activityLimitReached", retry_after=17)

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant()).deliver(image, rendered_path(image))

    assert raised.value.permanent is False
    assert raised.value.needs_reconnect is False
    assert raised.value.retry_after == 17
    assert raised.value.http_status == 429
    assert "activityLimitReached" in raised.value.message


@pytest.mark.parametrize(("header", "wait"), [(10**12, 3600), (-5, None)])
def test_an_outlandish_retry_after_is_capped_or_ignored(drive, header, wait):
    image = make_staged_image(noisy_jpeg((160, 120)))
    drive.fail_next("upload", status=503, code="serviceNotAvailable", retry_after=header)

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant()).deliver(image, rendered_path(image))

    assert raised.value.retry_after == wait
    assert raised.value.permanent is False


def test_a_server_error_is_retryable(drive):
    image = make_staged_image(noisy_jpeg((160, 120)))
    drive.fail_next("folder", status=502, code="generalException")

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant()).deliver(image, rendered_path(image))

    assert raised.value.permanent is False
    assert raised.value.http_status == 502


def test_an_access_denied_answer_needs_reconnect(drive):
    image = make_staged_image(noisy_jpeg((160, 120)))
    drive.fail_next("upload", status=403, code="accessDenied")

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant()).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.permanent is False


def test_the_delivery_engine_waits_at_least_as_long_as_graph_asked(drive, owner, api_client, settings):
    settings.APERTUR_RETRY_DELAYS = [1, 1]
    destination = stored_drive(drive, owner.project)
    drive.fail_next("upload", status=429, code="activityLimitReached", retry_after=600)
    session = create_session(api_client, owner, [str(destination.pk)])
    upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    delivery = Delivery.objects.get(destination=destination)
    before = timezone.now()

    delivery_execute(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.next_retry_at >= before + timedelta(seconds=590)
    assert "retry after 600 s" in delivery.last_error


# --- tokens ---------------------------------------------------------------------------------------------


def test_a_token_close_to_expiry_is_refreshed_through_msal_and_the_rotated_refresh_token_saved(drive, owner):
    destination = stored_drive(drive, owner.project, expires_at=time.time() + 30)
    before = stored_token(destination)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    after = stored_token(destination)
    assert drive.refreshes == 1
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["refresh_token"] in drive.refresh_tokens
    assert before["refresh_token"] not in drive.refresh_tokens  # Microsoft's rotation: the old one is spent
    assert after["expires_at"] > time.time() + 3000
    [form] = drive.token_forms
    assert form["grant_type"] == "refresh_token"
    assert form["client_info"] == "1"  # sent by MSAL, not by a hand-written form
    assert set(form["scope"].split()) == {"Files.ReadWrite.All", "offline_access", "openid", "profile"}
    assert ("GET", "/common/v2.0/.well-known/openid-configuration") in drive.requests
    assert list(drive.files()) == [rendered_path(image)]


def test_an_access_token_refused_early_is_refreshed_once_and_the_upload_repeated(drive, owner):
    destination = stored_drive(drive, owner.project)
    drive.expire_access_tokens()  # e.g. the user changed their password
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert drive.refreshes == 1
    assert list(drive.files()) == [rendered_path(image)]


def test_two_workers_with_an_expired_token_refresh_once_and_both_deliver(drive, transactional_db, settings):
    settings.APERTUR_OAUTH = {"onedrive": drive.settings()}
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(drive.certificate)
    destination = stored_drive(drive, make_persona("racer").project, expires_at=time.time() - 10)
    drive.token_gate.clear()
    images = [make_staged_image(noisy_jpeg((160, 120)), image_id=f"img_RACE{number}") for number in range(2)]
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
    try:
        assert drive.token_requests_arrived.acquire(timeout=10), "no refresh reached the token endpoint"
        # A second refresh would arrive within milliseconds without the lock; an absence cannot be awaited.
        second_refresh_arrived = drive.token_requests_arrived.acquire(timeout=1.5)
    finally:
        drive.token_gate.set()
    for worker in workers:
        worker.join(30)

    assert errors == []
    assert second_refresh_arrived is False
    assert drive.refreshes == 1  # a second refresh with the spent refresh token would have been invalid_grant
    assert sorted(drive.files()) == sorted(rendered_path(image) for image in images)
    assert stored_token(destination)["refresh_token"] in drive.refresh_tokens


def test_a_revoked_grant_needs_reconnect_and_flags_the_destination(drive, owner):
    destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    drive.revoke_grants()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.permanent is False
    assert "invalid_grant, AADSTS700082" in raised.value.message
    destination.refresh_from_db()
    assert destination.needs_reconnect is True
    assert drive.files() == {}


def test_a_grant_that_needs_new_consent_or_mfa_needs_reconnect(drive, owner):
    destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    drive.fail_next("token", status=400, code="interaction_required", aadsts=50076)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.message == "onedrive refused the refresh token (interaction_required, AADSTS50076)"


def test_a_wrong_client_secret_is_the_operators_problem_not_a_reconnect(drive, owner, settings):
    settings.APERTUR_OAUTH["onedrive"]["client_secret"] = "not-the-secret"
    destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is False
    assert "client credentials" in raised.value.message
    assert "not-the-secret" not in raised.value.message
    destination.refresh_from_db()
    assert destination.needs_reconnect is False


def test_a_token_endpoint_that_fails_is_a_retryable_error(drive, owner):
    destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    drive.fail_next("token", status=503, code="temporarily_unavailable")
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is False
    assert raised.value.permanent is False
    assert stored_token(destination)["refresh_token"] in drive.refresh_tokens  # still usable next time


def test_a_token_url_that_is_not_a_v2_token_endpoint_is_named_and_retried_until_the_operator_fixes_it(
    drive, owner, settings
):
    """The server's settings are at fault, not the delivery: it waits on its schedule (docs/destinations.md)."""
    settings.APERTUR_OAUTH["onedrive"]["token_url"] = f"{drive.url}/token"
    destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.permanent is False
    assert "/oauth2/v2.0/token" in raised.value.message


# --- the provider's authorisation endpoints, as the connect flow uses them --------------------------------


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")  # MSAL's advice; query is the default
def test_the_authorize_endpoint_answers_with_a_code_that_msal_exchanges_with_pkce(drive):
    session = requests.Session()
    session.trust_env = False  # the environment's CA bundle would replace the one set here
    session.verify = str(drive.certificate)
    application = msal.ConfidentialClientApplication(
        drive.client_id,
        client_credential=drive.client_secret,
        authority=OneDriveBackend.authority(),
        instance_discovery=False,
        http_client=session,
    )
    redirect_uri = "https://apertur.example/destinations/oauth/onedrive/callback"
    flow = application.initiate_auth_code_flow(OneDriveBackend.msal_scopes(), redirect_uri=redirect_uri)

    answer = session.get(flow["auth_uri"], allow_redirects=False)
    location = urlsplit(answer.headers["Location"])
    query = dict(parse_qsl(location.query))
    result = application.acquire_token_by_auth_code_flow(flow, query)

    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(f"{redirect_uri}?")
    assert query["state"] == flow["state"]
    assert "access_token" in result, result
    assert result["refresh_token"] in drive.refresh_tokens
    assert drive.token_forms[-1]["code_verifier"]  # PKCE, checked by the server against the S256 challenge


def test_a_code_exchanged_with_the_wrong_pkce_verifier_is_refused(drive):
    session = requests.Session()
    session.trust_env = False  # the environment's CA bundle would replace the one set here
    session.verify = str(drive.certificate)
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636's example, for verifier dBjftJeZ4CVP…
    answer = session.get(
        f"{drive.url}/common/oauth2/v2.0/authorize",
        params={
            "client_id": drive.client_id,
            "response_type": "code",
            "redirect_uri": "https://apertur.example/cb",
            "scope": "Files.ReadWrite.All offline_access",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    code = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))["code"]

    refused = session.post(
        f"{drive.url}/common/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://apertur.example/cb",
            "client_id": drive.client_id,
            "client_secret": drive.client_secret,
            "code_verifier": "not-the-verifier",
        },
    )

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert refused.json()["error_codes"] == [501481]


# --- through the delivery engine ------------------------------------------------------------------------


def test_a_revoked_grant_holds_deliveries_until_reconnected_and_then_they_complete(drive, api_client, worker, settings):
    settings.APERTUR_RETRY_DELAYS = [0.5] * 10
    persona = make_persona("reconnecting")
    destination = stored_drive(drive, persona.project, config={"folderPath": "Inbox"}, expires_at=time.time() - 10)
    drive.revoke_grants()  # the user removed the app's access at Microsoft
    session = create_session(api_client, persona, [str(destination.pk)])
    data = noisy_jpeg((320, 240))
    accepted = upload_image(api_client, session["id"], data)

    delivery = wait_until(
        lambda: Delivery.objects.filter(destination=destination, last_error__contains="invalid_grant").first()
    )
    assert delivery.status in ("pending", "delivering")
    assert Destination.objects.get(pk=destination.pk).needs_reconnect is True
    # Reconnecting stores a fresh grant, as the connect flow's callback does.
    Destination.objects.filter(pk=destination.pk).update(secrets={"token": drive.grant()})

    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == "delivered")
    [(path, stored)] = drive.files().items()
    assert path.startswith(f"Inbox/{session['id']}/0_{accepted['id']}")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert Destination.objects.get(pk=destination.pk).needs_reconnect is False


def test_the_authorize_endpoint_can_post_the_code_back_as_a_form(drive):
    session = requests.Session()
    session.trust_env = False
    session.verify = str(drive.certificate)

    answer = session.get(
        f"{drive.url}/common/oauth2/v2.0/authorize",
        params={
            "client_id": drive.client_id,
            "response_type": "code",
            "response_mode": "form_post",
            "redirect_uri": "https://apertur.example/cb",
            "scope": "Files.ReadWrite.All offline_access",
            "state": "s&2",
        },
        allow_redirects=False,
    )

    assert answer.status_code == 200
    assert '<form method="POST" action="https://apertur.example/cb">' in answer.text
    assert '<input type="hidden" name="state" value="s&amp;2">' in answer.text
    assert len(drive.codes) == 1


def test_onedrive_without_a_client_secret_is_not_configured_and_its_deliveries_keep_retrying(drive, settings):
    """MSAL's confidential client cannot refresh without the secret: such a server is "not configured" in the API
    and pages, and a delivery waits for the operator rather than failing for good."""
    settings.APERTUR_OAUTH = {"onedrive": {**settings.APERTUR_OAUTH["onedrive"], "client_secret": ""}}
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        onedrive_backend(drive.grant(access_expires_in=-10)).deliver(image, rendered_path(image))

    assert not OneDriveBackend.is_configured()
    assert "not configured" in raised.value.message
    assert not raised.value.permanent and not raised.value.needs_reconnect


@pytest.mark.parametrize(
    "answer",
    [
        {"error": {"code": "leaked-secret-42"}},
        {"error": "invalid_grant", "error_codes": "leaked-secret-42"},
        {"access_token": ["leaked-secret-42"], "expires_in": 3600},
        ["leaked-secret-42"],
    ],
)
def test_a_token_answer_that_is_not_a_token_is_a_transient_failure_that_names_no_token(answer):
    from destinations.backends.oauth import OAuthToken, TokenAnswerUnusable
    from destinations.backends.onedrive import _token_from

    with pytest.raises((DeliveryError, TokenAnswerUnusable)) as raised:
        _token_from(answer, OAuthToken(access_token="old", refresh_token="refresh"))

    # TokenAnswerUnusable: the base keeps the refresh token and fails the attempt (test_oauth_backend.py).
    assert "leaked-secret-42" not in str(raised.value)
    assert not getattr(raised.value, "permanent", False)


def _raw_answer(request, status: int, body: bytes) -> None:
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("status", [204, 299, 302])
def test_an_openid_discovery_msal_cannot_use_fails_the_refresh_for_now(drive, owner, status, monkeypatch, caplog):
    """MSAL raises RuntimeError (quoting the body) when the discovery answers something it cannot use."""
    monkeypatch.setattr(drive, "discovery", lambda request, tenant: drive.answer(request, status, {"x": "body-42"}))
    destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert not raised.value.permanent
    assert "body-42" not in raised.value.message and "body-42" not in caplog.text


@pytest.mark.parametrize("where", ["token", "graph"])
def test_an_answer_nested_too_deep_to_read_fails_the_attempt_for_now(drive, owner, where, monkeypatch):
    if where == "token":
        monkeypatch.setattr(drive, "token", lambda request: (drive.body(request), _raw_answer(request, 400, DEEP_JSON)))
        destination = stored_drive(drive, owner.project, expires_at=time.time() - 10)
    else:
        answer = lambda request, path, query: (drive.body(request), _raw_answer(request, 500, DEEP_JSON))  # noqa: E731
        monkeypatch.setattr(drive, "graph", answer)
        destination = stored_drive(drive, owner.project)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert not raised.value.permanent
