"""The OAuth backend base (destinations/backends/oauth.py) on a dummy drive served by a local OAuth provider:
refresh ahead of expiry, rotated refresh tokens saved under the lock, one refresh for two racing workers, and a
reconnect when the grant is gone."""

import email.utils
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection

from apertur.deadlines import Deadline
from destinations.attempts import backend_for, database_lock
from destinations.backends import BACKENDS, backend_class, oauth
from destinations.backends.base import AttemptContext, DeliveryError, MemorySecretsStore, parse_retry_after
from destinations.models import Destination
from tests.destinations import dummy_oauth
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    make_staged_image,
    rendered_path,
    stored_destination,
)
from tests.destinations.dummy_oauth import DummyDriveBackend, DummyDriveConfig
from tests.factories import make_persona, noisy_jpeg
from tests.servers.oauth_provider import OAuthProvider


@pytest.fixture
def provider(settings, monkeypatch):
    server = OAuthProvider()
    monkeypatch.setitem(BACKENDS, dummy_oauth.TYPE, "tests.destinations.dummy_oauth.DummyDriveBackend")
    backend_class.cache_clear()
    settings.APERTUR_OAUTH = {
        dummy_oauth.TYPE: {
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "token_url": f"{server.url}/token",
            "api_base": server.url,
        }
    }
    yield server
    backend_class.cache_clear()
    server.stop()


def drive_backend(token: dict, **config) -> DummyDriveBackend:
    return DummyDriveBackend(DummyDriveConfig.model_validate({"token": token, **config}))


class DriveTarget(ContractTarget):
    def __init__(self, provider: OAuthProvider) -> None:
        self.provider = provider

    def backend(self) -> DummyDriveBackend:
        return drive_backend(self.provider.grant())

    def failing_backend(self) -> DummyDriveBackend:
        token = self.provider.grant()
        self.provider.failing_tokens.add(token["access_token"])
        return drive_backend(token)

    def backend_with_refused_credentials(self) -> DummyDriveBackend:
        # A token set the provider never issued: the access token is refused and so is its refresh.
        return drive_backend({"access_token": "forged", "refresh_token": "forged", "expires_at": time.time() + 3600})

    def delivered(self) -> dict[str, bytes]:
        return dict(self.provider.files)

    def location(self, image, path: str) -> str:
        return path


class TestDummyOAuthBackendContract(BackendContract):
    rewritable_secret = ("token", "refresh_token")

    @pytest.fixture
    def target(self, provider) -> DriveTarget:
        return DriveTarget(provider)


def stored_drive(provider: OAuthProvider, project, **token_changes) -> Destination:
    return stored_destination(drive_backend({**provider.grant(), **token_changes}), project)


def stored_token(destination: Destination) -> dict:
    return Destination.objects.get(pk=destination.pk).secrets["token"]


def test_a_token_close_to_expiry_is_refreshed_first_and_the_rotated_tokens_are_saved(provider, owner):
    destination = stored_drive(provider, owner.project, expires_at=time.time() + 30)
    before = stored_token(destination)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    after = stored_token(destination)
    assert provider.refreshes == 1
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]  # rotated, and the new one kept
    assert after["refresh_token"] in provider.refresh_tokens
    assert after["expires_at"] > time.time() + 3000
    assert list(provider.files) == [rendered_path(image)]


def test_a_fresh_token_is_used_as_it_is(provider, owner):
    destination = stored_drive(provider, owner.project)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert provider.refreshes == 0


def test_an_access_token_refused_before_its_expiry_is_refreshed_once_and_the_call_repeated(provider, owner):
    destination = stored_drive(provider, owner.project)
    provider.access_tokens.clear()  # the provider dropped it early (password change, admin action)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert provider.refreshes == 1
    assert list(provider.files) == [rendered_path(image)]


def test_two_workers_with_an_expired_token_refresh_once_and_both_deliver(provider, transactional_db):
    destination = stored_drive(provider, make_persona("racer").project, expires_at=time.time() - 10)
    provider.token_gate.clear()  # hold refreshes at the provider while both workers are under way
    images = [make_staged_image(noisy_jpeg((160, 120)), image_id=f"img_RACE{number}") for number in range(2)]
    errors: list[Exception] = []

    def deliver(image) -> None:
        try:
            backend = backend_for(Destination.objects.get(pk=destination.pk))
            backend.deliver(image, rendered_path(image))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver, args=(image,)) for image in images]
    for worker in workers:
        worker.start()
    assert provider.token_requests_arrived.acquire(timeout=10), "no refresh reached the provider"
    # Without the lock the second worker would send its own refresh within milliseconds; give it ample time to
    # (wrongly) arrive — an absence cannot be awaited, so this wait is bounded instead.
    second_refresh_arrived = provider.token_requests_arrived.acquire(timeout=1.5)
    provider.token_gate.set()
    for worker in workers:
        worker.join(30)

    assert errors == []
    assert second_refresh_arrived is False
    # With rotation, a second refresh with the same refresh token would have been refused (invalid_grant).
    assert provider.refreshes == 1
    assert sorted(provider.files) == sorted(rendered_path(image) for image in images)
    assert stored_token(destination)["refresh_token"] in provider.refresh_tokens


def test_a_refresh_is_not_started_without_time_to_finish_it_so_no_rotated_token_is_lost(provider, owner, monkeypatch):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    monkeypatch.setattr(oauth, "TOKEN_REQUEST_TIMEOUT_SECONDS", 5)
    image = make_staged_image(noisy_jpeg((160, 120)))

    short = backend_for(destination, deadline=Deadline(1))
    with pytest.raises(DeliveryError) as raised:
        short.deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is False  # a retry will do
    assert provider.refreshes == 0  # the refresh token still works
    backend_for(destination).deliver(image, rendered_path(image))
    assert provider.refreshes == 1
    assert list(provider.files) == [rendered_path(image)]


def test_a_revoked_grant_needs_reconnect_flags_the_destination_and_stays_retryable(provider, owner):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    provider.revoke_everything()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is True
    assert raised.value.permanent is False
    assert "invalid_grant" in raised.value.message
    destination.refresh_from_db()
    assert destination.needs_reconnect is True
    assert provider.files == {}


def test_wrong_server_client_credentials_are_reported_without_blaming_the_user(provider, owner, settings):
    settings.APERTUR_OAUTH[dummy_oauth.TYPE]["client_secret"] = "not-the-secret"
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert raised.value.needs_reconnect is False
    assert "client credentials" in raised.value.message
    destination.refresh_from_db()
    assert destination.needs_reconnect is False


def test_provider_endpoints_come_from_settings_else_the_documented_defaults(provider, settings):
    assert DummyDriveBackend.endpoint("token_url") == f"{provider.url}/token"
    assert DummyDriveBackend.endpoint("authorize_url") == "https://drive.invalid/authorize"
    settings.APERTUR_OAUTH = {}
    assert DummyDriveBackend.endpoint("token_url") == "https://drive.invalid/token"
    assert DummyDriveBackend.is_configured() is False


def test_tokens_are_secrets_stored_apart_and_never_in_the_plain_config(provider, owner):
    backend = drive_backend(provider.grant(), folderPath="Claims")

    config, secrets = backend.config.stored_form()

    assert config == {"folderPath": "Claims"}
    assert set(secrets["token"]) == {"access_token", "refresh_token", "expires_at"}


def test_a_backend_without_a_context_keeps_refreshed_tokens_in_memory(provider):
    backend = drive_backend({**provider.grant(), "expires_at": time.time() - 10})
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend.deliver(image, rendered_path(image))

    assert isinstance(backend.context, AttemptContext)
    assert isinstance(backend.context.secrets, MemorySecretsStore)
    assert backend.context.secrets.secrets["token"]["refresh_token"] in provider.refresh_tokens


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="SQLite serves one process: its process lock is the lock")
def test_the_database_lock_serialises_holders_that_share_no_process_lock(transactional_db):
    # Each thread stands for a worker on another machine: only the database lock is between them.
    entered, overlaps = [], []
    guard = threading.Lock()
    all_started = threading.Barrier(4)

    def hold() -> None:
        try:
            all_started.wait(5)
            with database_lock("contract-test"):
                with guard:
                    if entered:
                        overlaps.append(len(entered))
                    entered.append(1)
                time.sleep(0.05)  # the holder's work; a second holder would overlap it
                with guard:
                    entered.pop()
        finally:
            connection.close()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert overlaps == []


def test_holding_a_destinations_secrets_does_not_hold_up_other_writes(provider, transactional_db):
    # A token refresh is an HTTP call made while the secrets are held: the database must stay writable meanwhile
    # (on SQLite an open transaction would hold its database-wide write lock).
    project = make_persona("holder").project
    destination = stored_drive(provider, project)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with backend_for(Destination.objects.get(pk=destination.pk)).context.secrets.locked() as stored:
                stored["token"]["refresh_token"] = "rotated"
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        other = stored_drive(provider, project)  # an unrelated write
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(10)

    assert elapsed < 1
    assert stored_token(destination)["refresh_token"] == "rotated"
    assert Destination.objects.filter(pk=other.pk).exists()


def test_the_api_can_neither_create_nor_patch_an_oauth_token(provider, api_client, owner):
    token = provider.grant()
    created = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations",
        {"type": dummy_oauth.TYPE, "name": "Drive", "config": {"token": token}},
        format="json",
        **owner.auth,
    )
    destination = stored_drive(provider, owner.project)
    patched = api_client.patch(
        f"/api/v1/projects/{owner.project.pk}/destinations/{destination.pk}",
        {"config": {"token": None, "folderPath": "Elsewhere"}},
        format="json",
        **owner.auth,
    )

    for response in (created, patched):
        assert response.status_code == 400
        assert response.json()["fields"] == {"config.token": ["set by connecting the destination, not through the API"]}
    assert stored_token(destination)["access_token"] != ""  # the grant survived
    destination.refresh_from_db()
    assert destination.config == {"folderPath": "Apertur"}


# --- a hostile or broken provider (docs/destinations.md "Connecting an OAuth destination") -----------------------

SECRET_MARK = "leaked-secret-0123456789"


@pytest.mark.parametrize(
    "payload",
    [
        {"access_token": [SECRET_MARK], "expires_in": 3600},
        {"access_token": {"value": SECRET_MARK}, "expires_in": 3600},
        {"access_token": 12345678901234, "expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"error": {"code": SECRET_MARK}},  # an error that is an object, with a 400
        [SECRET_MARK],  # not an object at all
    ],
)
def test_a_token_answer_that_is_not_a_token_fails_the_attempt_for_now_and_keeps_the_stored_token(
    provider, owner, payload, caplog
):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    before = stored_token(destination)
    provider.answer_next_token_request(400 if isinstance(payload, dict) and "error" in payload else 200, payload)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert not raised.value.permanent and not raised.value.needs_reconnect
    assert SECRET_MARK not in raised.value.message and SECRET_MARK not in caplog.text
    assert stored_token(destination)["refresh_token"] == before["refresh_token"]
    assert not Destination.objects.get(pk=destination.pk).needs_reconnect
    # The next attempt, with a sane answer, delivers.
    backend_for(destination).deliver(image, rendered_path(image))
    assert list(provider.files) == [rendered_path(image)]


def test_a_token_answer_with_a_lifetime_as_a_string_is_understood(provider, owner):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    provider.answer_next_token_request(200, {"access_token": provider.grant()["access_token"], "expires_in": "3599"})
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert 3500 < stored_token(destination)["expires_at"] - time.time() <= 3600


def test_a_server_that_lost_its_client_id_keeps_deliveries_retrying_until_the_operator_fixes_it(
    provider, owner, settings
):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    configured = settings.APERTUR_OAUTH
    settings.APERTUR_OAUTH = {dummy_oauth.TYPE: {**configured[dummy_oauth.TYPE], "client_id": ""}}
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert "not configured" in raised.value.message
    assert not raised.value.permanent and not raised.value.needs_reconnect
    settings.APERTUR_OAUTH = configured
    backend_for(destination).deliver(image, rendered_path(image))
    assert list(provider.files) == [rendered_path(image)]


@pytest.mark.parametrize(
    "raised_by_the_library", [ValueError("Expecting value: line 1"), AssertionError(), KeyError("id")]
)
def test_an_answer_the_client_library_cannot_read_fails_the_attempt_for_now(provider, raised_by_the_library):
    """The base's guard takes an escaping ValueError for a refused setting (permanent); inside a provider call it
    is the provider's answer that could not be read, which the next attempt may find readable."""
    backend = drive_backend(provider.grant())

    def unreadable(access_token: str):
        raise raised_by_the_library

    with pytest.raises(DeliveryError) as raised:
        backend.with_access_token(unreadable)

    assert not raised.value.permanent
    assert type(raised_by_the_library).__name__ in raised.value.message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # RFC 9110: delta-seconds are whole
        ("٣", None),  # a digit, but not an ASCII one
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
    ],
)
def test_retry_after_is_read_as_delta_seconds_or_an_http_date(header, expected):
    assert parse_retry_after(header) == expected


def test_retry_after_as_an_http_date_in_the_future_is_the_seconds_until_then():
    moment = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)

    assert 290 <= parse_retry_after(moment) <= 300


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000  # nests deeper than Python's JSON reader can go


@pytest.mark.parametrize("status", [200, 400])
def test_a_token_answer_nested_too_deep_to_read_fails_the_attempt_for_now(provider, owner, status):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    provider.answer_next_token_request(status, DEEP_JSON)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert not raised.value.permanent and not raised.value.needs_reconnect


@pytest.mark.parametrize(
    "odd",
    [
        {"expires_in": "soon"},
        {"expires_in": -1},
        {"expires_in": 1e12},
        {"expires_in": 0},
        {"expires_in": float("inf")},  # sent as the JSON literal Infinity
        {"expires_in": float("nan")},
        {"expires_in": True},
        {"expires_in": [3600]},
    ],
)
def test_a_rotated_refresh_token_is_kept_when_the_lifetime_beside_it_is_nonsense(provider, owner, monkeypatch, odd):
    """The provider has already rotated the refresh token when it answers: refusing the answer would lose the
    grant. A lifetime that is not one counts as unknown: the token is used until refused."""
    sane = provider.refresh
    monkeypatch.setattr(
        provider, "refresh", lambda form: (lambda answer: (answer[0], {**answer[1], **odd}))(sane(form))
    )
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend_for(destination).deliver(image, rendered_path(image))

    assert stored_token(destination)["refresh_token"] in provider.refresh_tokens
    assert stored_token(destination)["expires_at"] is None
    assert list(provider.files) == [rendered_path(image)]


@pytest.mark.parametrize("access_token", [["not", "a", "token"], "abc\r\nX-Injected: 1", "tök€n", "a b", "x" * 20_000])
def test_a_refresh_whose_access_token_is_unusable_keeps_the_rotated_refresh_token_and_refreshes_next_time(
    provider, owner, monkeypatch, access_token
):
    sane = provider.refresh
    hostile = lambda form: (lambda answer: (answer[0], {**answer[1], "access_token": access_token}))(sane(form))  # noqa: E731
    monkeypatch.setattr(provider, "refresh", hostile)
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for(destination).deliver(image, rendered_path(image))

    assert not raised.value.permanent and not raised.value.needs_reconnect
    assert "access_token" in raised.value.message
    assert stored_token(destination)["refresh_token"] in provider.refresh_tokens  # the rotated one, kept
    monkeypatch.setattr(provider, "refresh", sane)
    backend_for(destination).deliver(image, rendered_path(image))
    assert provider.refreshes == 2
    assert list(provider.files) == [rendered_path(image)]


def test_a_short_lived_token_is_used_until_refused_rather_than_refreshed_before_every_call(provider, owner):
    destination = stored_drive(provider, owner.project, expires_at=time.time() - 10)
    provider.answer_next_token_request(200, {**provider.grant(), "expires_in": 30})
    images = [make_staged_image(noisy_jpeg((160, 120)), image_id=f"img_SHORT{n}") for n in range(3)]

    for image in images:
        backend_for(destination).deliver(image, rendered_path(image))

    assert len(provider.token_requests) == 1
    assert len(provider.files) == 3
