"""The OAuth connect flow (docs/destinations.md "Connecting an OAuth destination") with the Django test client:
start → the provider's authorise endpoint (which answers with a code) → callback → a destination with encrypted
tokens; refused states; roles; reconnect; disconnect with revocation; a provider that is not configured.

Every case runs against each provider through `ConnectTarget`: the dummy drive on the OAuthBackend base with the
generic local provider (tests/servers/oauth_provider.py), and the four drives — google_drive, dropbox, onedrive,
box — each with its real backend against its own local provider server (tests/servers/<type>.py)."""

import re
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client

from delivery.models import Delivery
from destinations import oauth_connect
from destinations.attempts import backend_for
from destinations.backends import BACKENDS, backend_class
from destinations.backends.oauth import OAuthBackend
from destinations.models import Destination
from projects.models import Membership
from tests.destinations import dummy_oauth
from tests.destinations.contract import make_staged_image, rendered_path
from tests.destinations.dummy_oauth import DummyDriveBackend
from tests.destinations.helpers import create_session, upload_image
from tests.factories import make_persona, noisy_jpeg, wait_until
from tests.servers.box import BoxServer
from tests.servers.dropbox import DropboxServer
from tests.servers.google_drive import CLIENT_ID, CLIENT_SECRET, ROOT_ID, GoogleServer
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.onedrive import OneDriveServer


class ConnectTarget:
    """A type connected by OAuth and its local provider server, as the cases below use them. Each provider has a
    subclass and a `<type>_target` fixture that empties its server and points APERTUR_OAUTH[type] there (the
    authorise, token and revoke URLs, the API base); the `target` fixture runs every case once per provider."""

    kind: str
    authorize_url: str  # where the start must send the browser

    @property
    def backend(self) -> type[OAuthBackend]:
        return backend_class(self.kind)

    def client_id(self) -> str:
        raise NotImplementedError

    def authorizations(self) -> int:
        """How many authorise requests the provider received."""
        raise NotImplementedError

    def code_exchanges(self) -> list[dict[str, str]]:
        """The authorization-code grants the token endpoint received, as forms."""
        raise NotImplementedError

    def access_token_valid(self, token: str) -> bool:
        raise NotImplementedError

    def revoked(self) -> list[str]:
        """The tokens revoked at the provider, in order."""
        raise NotImplementedError

    def deny_next_authorization(self) -> None:
        raise NotImplementedError

    def withdraw_consent(self) -> None:
        """The user removed the app at the provider: every token it issued is dead."""
        raise NotImplementedError

    def refuse_revocation(self) -> None:
        raise NotImplementedError

    def delivered(self) -> list[str]:
        """The paths of the files the provider holds."""
        raise NotImplementedError


class DummyDriveTarget(ConnectTarget):
    kind = dummy_oauth.TYPE

    def __init__(self, provider: OAuthProvider) -> None:
        self.provider = provider
        self.authorize_url = f"{provider.url}/authorize"

    def client_id(self) -> str:
        return self.provider.client_id

    def authorizations(self) -> int:
        return len(self.provider.authorize_requests)

    def code_exchanges(self) -> list[dict[str, str]]:
        return [form for form in self.provider.token_requests if form.get("grant_type") == "authorization_code"]

    def access_token_valid(self, token: str) -> bool:
        return self.provider.token_valid(token)

    def revoked(self) -> list[str]:
        return self.provider.revoked

    def deny_next_authorization(self) -> None:
        self.provider.deny_next_authorization()

    def withdraw_consent(self) -> None:
        self.provider.revoke_everything()

    def refuse_revocation(self) -> None:
        self.provider.client_secret = "rotated-at-the-provider"  # the revoke request is refused (invalid_client)

    def delivered(self) -> list[str]:
        return list(self.provider.files)


class GoogleDriveTarget(ConnectTarget):
    kind = "google_drive"

    def __init__(self, google: GoogleServer) -> None:
        self.google = google
        self.authorize_url = f"{google.url}/o/oauth2/v2/auth"

    def client_id(self) -> str:
        return self.google.client_id

    def authorizations(self) -> int:
        return sum(1 for method, path in self.google.requests if path.startswith("/o/oauth2/v2/auth?"))

    def code_exchanges(self) -> list[dict[str, str]]:
        return [form for form in self.google.token_forms if form.get("grant_type") == "authorization_code"]

    def access_token_valid(self, token: str) -> bool:
        return self.google.token_valid(f"Bearer {token}")

    def revoked(self) -> list[str]:
        return self.google.revoked

    def deny_next_authorization(self) -> None:
        self.google.deny_next_authorization()

    def withdraw_consent(self) -> None:
        self.google.revoke_everything()

    def refuse_revocation(self) -> None:
        self.google.fail_next("POST", "/revoke", status=503)

    def delivered(self) -> list[str]:
        return list(self.google.files_below(ROOT_ID))


class DropboxTarget(ConnectTarget):
    kind = "dropbox"

    def __init__(self, dropbox: DropboxServer) -> None:
        self.dropbox = dropbox
        self.authorize_url = f"{dropbox.url}/oauth2/authorize"

    def client_id(self) -> str:
        return self.dropbox.client_id

    def authorizations(self) -> int:
        return len(self.dropbox.authorize_requests)

    def code_exchanges(self) -> list[dict[str, str]]:
        return [form for form in self.dropbox.token_forms if form.get("grant_type") == "authorization_code"]

    def access_token_valid(self, token: str) -> bool:
        return self.dropbox.tokens.token_valid(token)

    def revoked(self) -> list[str]:
        return self.dropbox.revoked

    def deny_next_authorization(self) -> None:
        self.dropbox.refuse_authorization = True

    def withdraw_consent(self) -> None:
        self.dropbox.tokens.revoke_everything()

    def refuse_revocation(self) -> None:
        self.dropbox.fail("auth/token/revoke", status=500)

    def delivered(self) -> list[str]:
        return list(self.dropbox.delivered())


class OneDriveTarget(ConnectTarget):
    kind = "onedrive"

    def __init__(self, onedrive: OneDriveServer) -> None:
        self.onedrive = onedrive
        self.authorize_url = onedrive.settings()["authorize_url"]

    def client_id(self) -> str:
        return self.onedrive.client_id

    def authorizations(self) -> int:
        return sum(1 for method, path in self.onedrive.requests if path.endswith("/oauth2/v2.0/authorize"))

    def code_exchanges(self) -> list[dict[str, str]]:
        return [form for form in self.onedrive.token_forms if form.get("grant_type") == "authorization_code"]

    def access_token_valid(self, token: str) -> bool:
        with self.onedrive.lock:
            return self.onedrive.access_tokens.get(token, 0) > time.time()

    def revoked(self) -> list[str]:
        return []  # Microsoft has no revoke endpoint for a client (docs/destinations.md)

    def deny_next_authorization(self) -> None:
        self.onedrive.deny_next = True

    def withdraw_consent(self) -> None:
        self.onedrive.revoke_grants()

    def refuse_revocation(self) -> None:
        raise AssertionError("OneDrive has no revoke endpoint")

    def delivered(self) -> list[str]:
        return list(self.onedrive.files())


class BoxTarget(ConnectTarget):
    kind = "box"

    def __init__(self, box: BoxServer) -> None:
        self.box = box
        self.authorize_url = box.settings()["authorize_url"]

    def client_id(self) -> str:
        return self.box.client_id

    def authorizations(self) -> int:
        return sum(1 for request in self.box.requests if request.path == "/api/oauth2/authorize")

    def code_exchanges(self) -> list[dict[str, str]]:
        return [form for form in self.box.token_forms if form.get("grant_type") == "authorization_code"]

    def access_token_valid(self, token: str) -> bool:
        return self.box.token_valid(token)

    def revoked(self) -> list[str]:
        return self.box.revoked

    def deny_next_authorization(self) -> None:
        self.box.deny_next = True

    def withdraw_consent(self) -> None:
        self.box.revoke_everything()

    def refuse_revocation(self) -> None:
        self.box.fail_next(r"^POST /oauth2/revoke$", 503)

    def delivered(self) -> list[str]:
        return list(self.box.files())


@pytest.fixture
def dummy_drive_target(settings, monkeypatch):
    provider = OAuthProvider()
    monkeypatch.setitem(BACKENDS, dummy_oauth.TYPE, "tests.destinations.dummy_oauth.DummyDriveBackend")
    backend_class.cache_clear()
    settings.APERTUR_OAUTH = {
        dummy_oauth.TYPE: {
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "authorize_url": f"{provider.url}/authorize",
            "token_url": f"{provider.url}/token",
            "revoke_url": f"{provider.url}/revoke",
            "api_base": provider.url,
        }
    }
    provider.redirect_uris.add(oauth_connect.redirect_uri(dummy_oauth.TYPE))
    yield DummyDriveTarget(provider)
    backend_class.cache_clear()
    provider.stop()


@pytest.fixture
def google_drive_target(google_server, settings):
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
    return GoogleDriveTarget(google_server)


@pytest.fixture
def dropbox_target(dropbox_server):
    return DropboxTarget(dropbox_server)  # the fixture resets it and points APERTUR_OAUTH["dropbox"] there


@pytest.fixture
def onedrive_target(onedrive_server, settings):
    onedrive_server.reset()
    settings.APERTUR_OAUTH = {"onedrive": onedrive_server.settings()}
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(onedrive_server.certificate)  # its TLS certificate names localhost
    return OneDriveTarget(onedrive_server)


@pytest.fixture
def box_target(box_server, settings):
    box_server.reset()
    settings.APERTUR_OAUTH = {"box": box_server.settings()}
    yield BoxTarget(box_server)
    box_server.token_gate.set()


OAUTH_KINDS = ["dummy_drive", "google_drive", "dropbox", "onedrive", "box"]


def kinds_where(applies: Callable[[type[OAuthBackend]], object]) -> list[str]:
    """The providers a case applies to (`applies(backend class)`), for `parametrize("target", …, indirect=True)`:
    a case that cannot apply to a provider is not generated for it, rather than generated and skipped."""
    # The dummy drive is registered by its fixture only, so it is looked up here by its class.
    backends = {kind: DummyDriveBackend if kind == dummy_oauth.TYPE else backend_class(kind) for kind in OAUTH_KINDS}
    return [kind for kind, backend in backends.items() if applies(backend)]


@pytest.fixture(params=OAUTH_KINDS)
def target(request) -> ConnectTarget:
    """Each case once per provider; only the provider servers a run needs are started."""
    return request.getfixturevalue(f"{request.param}_target")


def signed_in(persona_or_user) -> Client:
    client = Client()
    client.force_login(getattr(persona_or_user, "user", persona_or_user))
    return client


def start_url(kind: str) -> str:
    return f"/destinations/oauth/{kind}/start"


def start(client: Client, target: ConnectTarget, project, **fields) -> str:
    """POST the start form; the provider's authorise URL it redirects to."""
    response = client.post(start_url(target.kind), {"project": str(project.pk), **fields})
    assert response.status_code == 302, response.content
    assert response["Location"].startswith(f"{target.authorize_url}?")
    return response["Location"]


def authorize(authorize_url: str) -> str:
    """What the user's browser does at the provider: the provider consents and redirects to the callback; the
    callback's path and query on this server."""
    # The browser trusts what the server trusts: a local provider on TLS has its certificate in the CA bundle, and
    # the environment's bundle (REQUESTS_CA_BUNDLE) must not replace it.
    with requests.Session() as browser:
        browser.trust_env = False
        browser.verify = settings.APERTUR_OUTBOUND_CA_BUNDLE or True
        answer = browser.get(authorize_url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["Location"])
    assert f"{callback.scheme}://{callback.netloc}" == settings.APERTUR_PUBLIC_URL
    return f"{callback.path}?{callback.query}"


def connect(client: Client, target: ConnectTarget, project, **fields):
    return client.get(authorize(start(client, target, project, **fields)))


def with_query(callback: str, **changes: str) -> str:
    path, query = callback.split("?", 1)
    values = {name: value[0] for name, value in parse_qs(query).items()} | changes
    return f"{path}?{'&'.join(f'{name}={value}' for name, value in values.items())}"


def stored_token(destination: Destination) -> dict:
    return Destination.objects.get(pk=destination.pk).secrets["token"]


def raw_secrets_column(destination: Destination) -> str:
    """The secrets as the database holds them, not decrypted by the model field."""
    key = Destination._meta.pk.get_db_prep_value(destination.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM destinations_destination WHERE id = %s", [key])
        return cursor.fetchone()[0]


@pytest.fixture
def member(owner):
    persona = make_persona("member")
    Membership.objects.create(user=persona.user, project=owner.project, role=Membership.Role.MEMBER)
    return persona


@pytest.fixture
def project_admin(owner):
    persona = make_persona("project-admin")
    Membership.objects.create(user=persona.user, project=owner.project, role=Membership.Role.ADMIN)
    return persona


def test_an_owner_connects_a_drive_and_its_tokens_are_stored_encrypted_and_masked(target, owner, api_client):
    client = signed_in(owner)

    authorize_url = start(client, target, owner.project, name="Team drive")
    asked = {name: value[0] for name, value in parse_qs(urlsplit(authorize_url).query).items()}
    response = client.get(authorize(authorize_url))

    destination = Destination.objects.get(project=owner.project)
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{owner.project.pk}/destinations"
    assert (destination.type, destination.name, destination.needs_reconnect) == (target.kind, "Team drive", False)
    token = stored_token(destination)
    assert target.access_token_valid(token["access_token"])
    assert token["refresh_token"] and token["expires_at"] > time.time() + 3000
    # What was asked of the provider: this server's client, the callback, the scopes, PKCE S256, offline access.
    assert asked["client_id"] == target.client_id()
    assert asked["redirect_uri"] == oauth_connect.redirect_uri(target.kind)
    assert asked.get("scope", "") == " ".join(target.backend.scopes)
    assert target.backend.authorize_params.items() <= asked.items()
    assert len(asked["state"]) >= 32
    [exchange] = target.code_exchanges()
    if target.backend.supports_pkce:
        assert asked["code_challenge_method"] == "S256" and asked["code_challenge"]
        assert len(exchange["code_verifier"]) >= 43
    else:
        assert "code_challenge" not in asked and "code_verifier" not in exchange
    # Encrypted at rest, masked by the API.
    raw = raw_secrets_column(destination)
    assert token["access_token"] not in raw and token["refresh_token"] not in raw and "access_token" not in raw
    listed = api_client.get(f"/api/v1/projects/{owner.project.pk}/destinations", **owner.auth)
    assert token["access_token"] not in listed.content.decode()
    assert token["refresh_token"] not in listed.content.decode()
    assert listed.json()[0]["config"]["token"]["access_token"] == f"••••{token['access_token'][-4:]}"
    # The page lists it, and the tokens work.
    page = client.get(response["Location"])
    assert b"Team drive" in page.content and b"Reconnect" in page.content and b"is connected" in page.content
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend_for(destination).deliver(image, rendered_path(image))
    assert len(target.delivered()) == 1


def test_a_destination_connected_without_a_name_is_named_after_its_type(target, owner):
    connect(signed_in(owner), target, owner.project)

    assert Destination.objects.get(project=owner.project).name == target.backend.label()


def test_a_project_admin_may_connect_and_a_member_may_not(target, owner, project_admin, member):
    assert connect(signed_in(project_admin), target, owner.project).status_code == 302

    refused = signed_in(member).post(start_url(target.kind), {"project": str(owner.project.pk)})
    confirm_page = signed_in(member).get(start_url(target.kind), {"project": str(owner.project.pk)})

    assert refused.status_code == confirm_page.status_code == 403
    assert b"owners and admins" in refused.content
    assert target.authorizations() == 1  # the admin's only
    assert Destination.objects.filter(project=owner.project).count() == 1


def test_a_user_demoted_to_member_during_the_flow_cannot_complete_it(target, owner, project_admin):
    client = signed_in(project_admin)
    callback = authorize(start(client, target, owner.project))
    Membership.objects.filter(user=project_admin.user).update(role=Membership.Role.MEMBER)

    response = client.get(callback)

    assert response.status_code == 403
    assert not Destination.objects.exists()
    assert not target.code_exchanges()


def test_an_outsider_cannot_start_a_flow_for_another_project(target, owner, outsider):
    response = signed_in(outsider).post(start_url(target.kind), {"project": str(owner.project.pk)})

    assert response.status_code == 404
    assert target.authorizations() == 0


def test_a_forged_state_is_refused_and_the_real_one_still_completes(target, owner):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))

    forged = client.get(with_query(callback, state="forged-state-forged-state-forged-state"))
    missing = client.get(callback.split("?")[0] + "?code=abc")

    assert forged.status_code == missing.status_code == 400
    assert b"was not started here" in forged.content
    assert not Destination.objects.exists()
    assert client.get(callback).status_code == 302
    assert Destination.objects.count() == 1


def test_a_replayed_callback_is_refused(target, owner):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))
    assert client.get(callback).status_code == 302

    replayed = client.get(callback)

    assert replayed.status_code == 400
    assert b"already used" in replayed.content
    assert Destination.objects.count() == 1


def test_an_expired_state_is_refused(target, owner):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))
    session = client.session
    for flow in session[oauth_connect.SESSION_KEY].values():
        flow["expires_at"] = time.time() - 1
    session.save()

    response = client.get(callback)

    assert response.status_code == 400
    assert b"expired" in response.content
    assert not Destination.objects.exists()


def test_another_user_cannot_complete_someone_elses_flow(target, owner, outsider):
    owners_client = signed_in(owner)
    callback = authorize(start(owners_client, target, owner.project))

    response = signed_in(outsider).get(callback)

    assert response.status_code == 400
    assert not Destination.objects.exists()
    assert owners_client.get(callback).status_code == 302  # the owner's flow was not spent by the attempt
    assert Destination.objects.get().project == owner.project


def test_a_flow_carried_into_another_users_session_is_refused(target, owner, outsider):
    owners_client, outsiders_client = signed_in(owner), signed_in(outsider)
    callback = authorize(start(owners_client, target, owner.project))
    session = outsiders_client.session
    session[oauth_connect.SESSION_KEY] = owners_client.session[oauth_connect.SESSION_KEY]
    session.save()

    response = outsiders_client.get(callback)

    assert response.status_code == 400
    assert b"started by another user" in response.content
    assert not Destination.objects.exists()


def test_signing_in_as_another_user_in_the_same_browser_ends_the_flow(target, owner, outsider):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))

    client.force_login(outsider.user)  # Django starts a new session when another user signs in
    response = client.get(callback)

    assert response.status_code == 400
    assert not Destination.objects.exists()


def test_a_state_cannot_be_used_on_another_types_callback(target, owner):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))

    response = client.get(callback.replace(f"/oauth/{target.kind}/", "/oauth/s3/"))

    assert response.status_code == 404
    assert client.get(callback).status_code == 302


def test_a_refused_consent_changes_nothing(target, owner):
    client = signed_in(owner)
    target.deny_next_authorization()

    response = connect(client, target, owner.project)

    assert response.status_code == 400
    assert b"you did not allow access" in response.content
    assert not Destination.objects.exists()


def test_a_code_the_provider_refuses_is_reported_and_changes_nothing(target, owner):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))

    response = client.get(with_query(callback, code="not-a-code"))

    assert response.status_code == 400
    assert b"refused the authorization code (invalid_grant)" in response.content
    assert not Destination.objects.exists()


@pytest.mark.parametrize("target", kinds_where(lambda backend: backend.supports_pkce), indirect=True)
def test_the_code_is_bound_to_the_pkce_verifier_of_the_flow(target, owner):
    client = signed_in(owner)
    callback = authorize(start(client, target, owner.project))
    session = client.session
    for flow in session[oauth_connect.SESSION_KEY].values():
        flow["code_verifier"] = "another-verifier-another-verifier-another-verifier"
    session.save()

    response = client.get(callback)

    assert response.status_code == 400
    assert b"invalid_grant" in response.content
    assert not Destination.objects.exists()


def test_signing_in_is_required(target, owner):
    response = Client().post(start_url(target.kind), {"project": str(owner.project.pk)})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_starting_is_a_post_behind_a_confirmation_page(target, owner):
    client = signed_in(owner)

    page = client.get(start_url(target.kind), {"project": str(owner.project.pk), "name": "Photos"})

    assert page.status_code == 200
    assert b'method="post"' in page.content and b'value="Photos"' in page.content
    assert target.authorizations() == 0
    assert signed_in(owner).get(f"/destinations/oauth/{target.kind}/start").status_code == 404


def test_a_type_not_connected_by_oauth_has_no_flow(target, owner):
    response = signed_in(owner).post(start_url("s3"), {"project": str(owner.project.pk)})

    assert response.status_code == 404
    assert signed_in(owner).post(start_url("no_such_type"), {"project": str(owner.project.pk)}).status_code == 404


def test_reconnecting_replaces_the_tokens_and_clears_needs_reconnect(target, owner):
    client = signed_in(owner)
    connect(client, target, owner.project, name="Drive")
    destination = Destination.objects.get()
    before = stored_token(destination)
    target.withdraw_consent()
    Destination.objects.filter(pk=destination.pk).update(needs_reconnect=True, last_error="refused the token")

    page = client.get(f"/projects/{owner.project.pk}/destinations")
    authorize_url = start(client, target, owner.project, destination=str(destination.pk))
    response = client.get(authorize(authorize_url))

    assert b"needs reconnecting" in page.content
    assert response.status_code == 302
    reconnected = Destination.objects.get()
    assert reconnected.pk == destination.pk and reconnected.name == "Drive"
    assert (reconnected.needs_reconnect, reconnected.last_error) == (False, "")
    after = stored_token(reconnected)
    assert after["access_token"] != before["access_token"] and target.access_token_valid(after["access_token"])
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend_for(reconnected).deliver(image, rendered_path(image))
    assert target.delivered()


def test_a_destination_of_another_project_cannot_be_reconnected(target, owner, outsider):
    connect(signed_in(outsider), target, outsider.project)
    others = Destination.objects.get(project=outsider.project)

    response = signed_in(owner).post(
        start_url(target.kind), {"project": str(owner.project.pk), "destination": str(others.pk)}
    )

    assert response.status_code == 404
    assert target.authorizations() == 1


@pytest.mark.parametrize("target", kinds_where(lambda backend: backend.endpoints.revoke_url), indirect=True)
def test_disconnecting_revokes_the_grant_at_the_provider_and_forgets_the_tokens(target, owner):
    client = signed_in(owner)
    connect(client, target, owner.project)
    destination = Destination.objects.get()
    token = stored_token(destination)

    response = client.post(f"/destinations/oauth/{target.kind}/{destination.pk}/disconnect")

    assert response.status_code == 302
    # RFC 7009 revokes the refresh token, which ends the grant; Dropbox revokes through the access token.
    assert len(target.revoked()) == 1 and target.revoked()[0] in (token["refresh_token"], token["access_token"])
    assert not target.access_token_valid(token["access_token"])
    destination.refresh_from_db()
    assert "token" not in (destination.secrets or {})
    assert destination.needs_reconnect and destination.deleted_at is None
    page = client.get(response["Location"])
    assert b"access revoked" in page.content and b"needs reconnecting" in page.content


@pytest.mark.parametrize("target", kinds_where(lambda backend: backend.endpoints.revoke_url), indirect=True)
def test_disconnecting_revokes_the_grant_as_stored_now_not_as_the_page_loaded_it(target, owner):
    """A worker may refresh (and a rotating provider rotate the refresh token) between the moment the page loads
    the destination and the revocation: what is revoked is the token stored then, under the secrets lock."""
    connect(signed_in(owner), target, owner.project)
    loaded = Destination.objects.get()
    before = stored_token(loaded)
    backend_for(Destination.objects.get()).refresh_access_token(rejected=before["access_token"])
    now = stored_token(loaded)
    assert now["access_token"] != before["access_token"]

    outcome = oauth_connect.connect_disconnect(user=owner.user, destination=loaded)

    assert outcome.revoked, outcome.revoke_error
    assert target.revoked()[-1] in (now["refresh_token"], now["access_token"])
    assert not target.access_token_valid(now["access_token"])
    assert "token" not in (Destination.objects.get().secrets or {})


def test_a_token_answer_that_is_not_a_token_is_refused_at_connect_and_nothing_is_stored(
    dummy_drive_target, owner, caplog
):
    client = signed_in(owner)
    callback = authorize(start(client, dummy_drive_target, owner.project))
    dummy_drive_target.provider.answer_next_token_request(200, {"access_token": ["leaked-secret-42"]})

    response = client.get(callback)

    assert response.status_code == 400
    assert b"access_token" in response.content
    assert b"leaked-secret-42" not in response.content and "leaked-secret-42" not in caplog.text
    assert not Destination.objects.exists()


@pytest.mark.parametrize("status", [200, 400])
def test_a_token_answer_nested_too_deep_to_read_is_refused_at_connect_without_an_error_500(
    dummy_drive_target, owner, status
):
    client = signed_in(owner)
    callback = authorize(start(client, dummy_drive_target, owner.project))
    dummy_drive_target.provider.answer_next_token_request(status, b"[" * 100_000 + b"]" * 100_000)

    response = client.get(callback)

    assert response.status_code == 400
    assert not Destination.objects.exists()


def test_disconnecting_needs_a_post_with_the_csrf_token_from_an_owner_or_admin(target, owner, member):
    connect(signed_in(owner), target, owner.project)
    destination = Destination.objects.get()
    url = f"/destinations/oauth/{target.kind}/{destination.pk}/disconnect"
    csrf_checking = Client(enforce_csrf_checks=True)
    csrf_checking.force_login(owner.user)

    assert signed_in(owner).get(url).status_code == 405
    assert csrf_checking.post(url).status_code == 403
    assert signed_in(member).post(url).status_code == 403
    assert not target.revoked()
    assert "token" in Destination.objects.get().secrets


@pytest.mark.parametrize("target", kinds_where(lambda backend: backend.endpoints.revoke_url), indirect=True)
def test_a_provider_that_cannot_revoke_still_disconnects_and_says_so(target, owner):
    client = signed_in(owner)
    connect(client, target, owner.project)
    destination = Destination.objects.get()
    target.refuse_revocation()

    response = client.post(f"/destinations/oauth/{target.kind}/{destination.pk}/disconnect", follow=True)

    assert b"is disconnected here, but" in response.content
    assert b"remove Apertur&#x27;s access" in response.content
    assert "token" not in Destination.objects.get().secrets


@pytest.mark.parametrize(
    "target",
    kinds_where(lambda backend: backend is DummyDriveBackend or not backend.endpoints.revoke_url),
    indirect=True,
)
def test_a_provider_without_a_revoke_endpoint_is_disconnected_here_and_the_user_told_where_to_finish(
    target, owner, settings, monkeypatch
):
    if target.kind == dummy_oauth.TYPE:  # the dummy drive's revoke endpoint is taken away
        settings.APERTUR_OAUTH[target.kind].pop("revoke_url")
        monkeypatch.setattr(DummyDriveBackend, "endpoints", replace(DummyDriveBackend.endpoints, revoke_url=None))
    assert not target.backend.endpoint("revoke_url")
    client = signed_in(owner)
    connect(client, target, owner.project)
    destination = Destination.objects.get()

    response = client.post(f"/destinations/oauth/{target.kind}/{destination.pk}/disconnect", follow=True)

    label = target.backend.label().encode()
    assert b"is disconnected; remove Apertur&#x27;s access in your " + label + b" account settings" in response.content
    assert "token" not in Destination.objects.get().secrets
    assert not target.revoked()


def test_a_provider_without_a_client_id_is_shown_as_not_configured(target, owner, settings, api_client):
    settings.APERTUR_OAUTH = {}
    client = signed_in(owner)

    page = client.get(start_url(target.kind), {"project": str(owner.project.pk)})
    started = client.post(start_url(target.kind), {"project": str(owner.project.pk)})
    listed = client.get(f"/projects/{owner.project.pk}/destinations")
    types = api_client.get("/api/v1/destination-types", **owner.auth).json()

    assert page.status_code == 200 and started.status_code == 409
    for response in (page, started):
        assert b"is not configured" in response.content
        assert f"APERTUR_OAUTH_{target.kind.upper()}_CLIENT_ID".encode() in response.content
        assert oauth_connect.redirect_uri(target.kind).encode() in response.content
    assert b"not configured on this server" in listed.content
    assert {"type": target.kind, "oauth": True, "configured": False}.items() <= next(
        entry for entry in types if entry["type"] == target.kind
    ).items()
    assert target.authorizations() == 0


def test_the_destination_types_api_tells_which_providers_are_configured(target, owner, api_client):
    response = api_client.get("/api/v1/destination-types", **owner.auth)

    assert response.status_code == 200
    base = settings.APERTUR_PUBLIC_URL
    types = {entry["type"]: entry for entry in response.json()}
    assert types["s3"] == {"type": "s3", "oauth": False, "configured": True}
    assert types[target.kind] == {
        "type": target.kind,
        "oauth": True,
        "configured": True,
        "connectUrl": f"{base}/destinations/oauth/{target.kind}/start?project={owner.project.pk}",
        "redirectUri": f"{base}/destinations/oauth/{target.kind}/callback",
    }
    assert api_client.get("/api/v1/destination-types").status_code == 401


def test_a_delivery_waiting_on_a_revoked_grant_completes_after_reconnecting(
    target, owner, worker, settings, api_client
):
    settings.APERTUR_RETRY_DELAYS = [1, 1, 2, 4, 8]
    client = signed_in(owner)
    connect(client, target, owner.project)
    destination = Destination.objects.get()
    target.withdraw_consent()
    session = create_session(api_client, owner, [str(destination.pk)])
    upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    wait_until(
        lambda: Destination.objects.get().needs_reconnect and Delivery.objects.get().status == "pending", timeout=20
    )

    callback = authorize(start(client, target, owner.project, destination=str(destination.pk)))
    assert client.get(callback).status_code == 302

    wait_until(lambda: Delivery.objects.get().status == "delivered", timeout=30)
    assert len(target.delivered()) == 1
    assert not Destination.objects.get().needs_reconnect


def test_members_see_the_destinations_page_without_its_buttons_and_outsiders_do_not_see_it(
    target, owner, member, outsider
):
    connect(signed_in(owner), target, owner.project, name="Shared drive")
    url = f"/projects/{owner.project.pk}/destinations"

    for_the_owner = signed_in(owner).get(url)
    for_a_member = signed_in(member).get(url)
    for_an_outsider = signed_in(outsider).get(url)

    assert for_the_owner.status_code == for_a_member.status_code == 200
    assert b"Shared drive" in for_a_member.content
    connect_button = f"Connect {target.backend.label()}".encode()
    assert connect_button in for_the_owner.content and b"Disconnect" in for_the_owner.content
    assert connect_button not in for_a_member.content and b"Disconnect" not in for_a_member.content
    assert for_an_outsider.status_code == 404 and b"Shared drive" not in for_an_outsider.content


def test_the_connect_button_of_the_destinations_page_posts_a_working_form(target, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)
    page = client.get(f"/projects/{owner.project.pk}/destinations").content.decode()
    action = f'action="/destinations/oauth/{target.kind}/start"'
    form = page[page.index(action) : page.index("</form>", page.index(action))]
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))

    response = client.post(f"/destinations/oauth/{target.kind}/start", {**fields, "name": "From the page"})

    assert set(fields) == {"csrfmiddlewaretoken", "project"}
    assert response.status_code == 302 and response["Location"].startswith(f"{target.authorize_url}?")
    assert client.get(authorize(response["Location"])).status_code == 302
    assert Destination.objects.get().name == "From the page"


@pytest.mark.parametrize("name", ["Team\x00drive", "x" * 201])
def test_a_name_the_destination_could_not_have_is_refused_before_the_provider_is_asked(owner, dummy_drive_target, name):
    """Else the callback's create refuses it after the grant was made: a 500 on PostgreSQL (NUL) and a grant
    neither stored nor revoked."""
    response = signed_in(owner).post(
        start_url(dummy_drive_target.kind), {"project": str(owner.project.pk), "name": name}
    )

    assert response.status_code == 400
    assert "at most 200 characters" in response.content.decode()
    assert not Destination.objects.exists()
