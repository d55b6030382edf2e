"""The OAuth connect flow of the destinations connected by OAuth (docs/destinations.md "Connecting an OAuth
destination"): one use case per step, called by the pages (destinations/pages.py); the rows are written by
destinations/services.py.

The flow is the authorization-code grant (RFC 6749 §4.1) with PKCE S256 (RFC 7636) where the provider supports
it. What binds a callback to the start that asked for it is the `state`: random, single use, valid for
APERTUR_OAUTH_STATE_TTL_SECONDS, and kept in the starting user's Django session together with what it was for
(user, project, type, the destination to reconnect, the new destination's name, the PKCE verifier). A callback
whose state is not in the caller's session — forged, replayed, expired, started by another user or in another
browser — is refused before the code is looked at.

Small enough not to need an OAuth client library: oauthlib, the usual one, refuses plain-http authorise URLs
unless a process-wide environment variable is set, which the local provider servers of the tests would need.
"""

import base64
import hashlib
import logging
import secrets
import time
import traceback
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import cache
from django.urls import reverse
from pydantic import ValidationError as ConfigValidationError

from apertur.deadlines import Deadline
from apertur.errors import AppError
from destinations import services
from destinations.backends import BACKENDS, backend_class
from destinations.backends.base import AttemptContext, DeliveryError, MemorySecretsStore, merge_secrets
from destinations.backends.oauth import OAuthBackend, OAuthToken, TokenRequestFailed
from destinations.models import Destination
from projects.models import Membership, Project

logger = logging.getLogger(__name__)
SESSION_KEY = "apertur_oauth_connect"
# Pending flows kept per browser session: a few tabs at once, not an unbounded pile from a script.
MAX_PENDING_FLOWS = 10
NAME_MAX = 200  # Destination.name


@dataclass(frozen=True)
class ProviderStatus:
    type: str
    label: str
    configured: bool
    redirect_uri: str


@dataclass(frozen=True)
class DisconnectOutcome:
    revoked: bool  # the provider confirmed the revocation
    revoke_error: str | None  # why it did not, where it has a revoke endpoint


def oauth_backend_class(kind: str) -> type[OAuthBackend]:
    """The OAuth backend of a type; 404 for an unknown type or one that is not connected by OAuth."""
    backend = backend_class(kind) if kind in BACKENDS else None
    if backend is None or not issubclass(backend, OAuthBackend):
        raise AppError(404, "NOT_FOUND", f"{kind!r} is not a destination type connected by OAuth.")
    return backend


def oauth_types() -> list[str]:
    """Every registered type connected by OAuth (imports each backend module once)."""
    return [kind for kind in sorted(BACKENDS) if issubclass(backend_class(kind), OAuthBackend)]


def redirect_uri(kind: str) -> str:
    """The callback URL to register at the provider. Built on APERTUR_PUBLIC_URL, never on the request's Host:
    behind a proxy the request does not know the public name, and the provider compares the URI exactly."""
    return f"{settings.APERTUR_PUBLIC_URL}{reverse('destination-pages:oauth-callback', args=[kind])}"


def connect_url(kind: str, *, project: Project) -> str:
    """Where a signed-in owner or admin of the project starts connecting a destination of this type."""
    start = reverse("destination-pages:oauth-start", args=[kind])
    return f"{settings.APERTUR_PUBLIC_URL}{start}?{urlencode({'project': str(project.pk)})}"


def provider_status(kind: str) -> ProviderStatus:
    backend = oauth_backend_class(kind)
    return ProviderStatus(
        type=kind, label=backend.label(), configured=backend.is_configured(), redirect_uri=redirect_uri(kind)
    )


def can_manage_destinations(*, user: AbstractBaseUser, project: Project) -> bool:
    return Membership.objects.filter(user=user, project=project, role__in=Membership.MANAGING_ROLES).exists()


def ensure_can_manage(*, user: AbstractBaseUser, project: Project) -> None:
    if not can_manage_destinations(user=user, project=project):
        raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can connect its destinations.")


def connect_start(
    *,
    session: SessionBase,
    user: AbstractBaseUser,
    project: Project,
    kind: str,
    destination: Destination | None = None,
    name: str = "",
) -> str:
    """Remember a new flow in the user's session and return the provider's authorise URL to send them to.

    `destination`: the destination to reconnect (of this project and type); without it the callback creates one
    named `name` (default: the provider's name)."""
    backend = oauth_backend_class(kind)
    ensure_can_manage(user=user, project=project)
    if not backend.is_configured():
        raise AppError(409, "OAUTH_NOT_CONFIGURED", f"{backend.label()} is not configured on this server.")
    if destination is not None and (destination.project_id != project.pk or destination.type != kind):
        raise AppError(404, "NOT_FOUND", "Destination not found.")
    name = name.strip()
    if len(name) > NAME_MAX or "\x00" in name:
        # Checked before the provider is asked: the callback's create would refuse it after the grant was made.
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"A destination's name has at most {NAME_MAX} characters and no NUL character.",
            fields={"name": [f"at most {NAME_MAX} characters, no NUL character"]},
        )
    state = secrets.token_urlsafe(32)
    code_verifier = secrets.token_urlsafe(64) if backend.supports_pkce else None  # 86 characters, RFC 7636 §4.1
    flows = _pending_flows(session)
    flows[state] = {
        "user": str(user.pk),
        "project": str(project.pk),
        "type": kind,
        "destination": str(destination.pk) if destination else None,
        "name": name,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri(kind),
        "expires_at": time.time() + settings.APERTUR_OAUTH_STATE_TTL_SECONDS,
    }
    for oldest in sorted(flows, key=lambda key: flows[key]["expires_at"])[:-MAX_PENDING_FLOWS]:
        del flows[oldest]
    session[SESSION_KEY] = flows
    return _authorize_url(backend, kind=kind, state=state, code_verifier=code_verifier)


def _authorize_url(backend: type[OAuthBackend], *, kind: str, state: str, code_verifier: str | None) -> str:
    query = {
        "response_type": "code",
        "client_id": backend.provider_settings()["client_id"],
        "redirect_uri": redirect_uri(kind),
        "state": state,
    }
    if backend.scopes:
        query["scope"] = " ".join(backend.scopes)
    if code_verifier:
        query["code_challenge"] = _s256(code_verifier)
        query["code_challenge_method"] = "S256"
    query |= backend.authorize_params  # offline access, consent prompt: the provider's own way of asking
    authorize_url = backend.endpoint("authorize_url")
    return f"{authorize_url}{'&' if '?' in authorize_url else '?'}{urlencode(query)}"


def _s256(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _pending_flows(session: SessionBase) -> dict[str, dict[str, Any]]:
    now = time.time()
    return {state: flow for state, flow in session.get(SESSION_KEY, {}).items() if flow["expires_at"] > now}


def connect_complete(*, session: SessionBase, user: AbstractBaseUser, kind: str, query: dict[str, str]) -> Destination:
    """The provider's redirect back: check the state, exchange the code, store the tokens on a new destination or
    the one being reconnected. Every refusal is a 400 AppError whose message the page shows."""
    flow = _take_flow(session, state=query.get("state", ""), user=user, kind=kind)
    project = Project.objects.filter(pk=flow["project"]).first()
    if project is None:
        raise AppError(400, "OAUTH_STATE_INVALID", "The project of this connection no longer exists.")
    ensure_can_manage(user=user, project=project)  # roles may have changed since the start
    backend = oauth_backend_class(kind)
    if query.get("error"):
        error = query["error"][:100]
        reason = "you did not allow access" if error == "access_denied" else f"error {error!r}"
        raise AppError(400, "OAUTH_DENIED", f"{backend.label()} did not connect: {reason}. Nothing was changed.")
    if not query.get("code"):
        raise AppError(400, "OAUTH_DENIED", f"{backend.label()} sent no authorization code back. Nothing was changed.")
    try:
        token = backend.exchange_code(
            code=query["code"], redirect_uri=flow["redirect_uri"], code_verifier=flow["code_verifier"]
        )
    except TokenRequestFailed as error:
        raise AppError(400, "OAUTH_EXCHANGE_FAILED", f"{error}. Nothing was changed; try connecting again.") from error
    return _store(kind=kind, project=project, flow=flow, token=token)


def _take_flow(session: SessionBase, *, state: str, user: AbstractBaseUser, kind: str) -> dict[str, Any]:
    stored = session.get(SESSION_KEY, {})
    flow = stored.pop(state, None) if state else None
    session[SESSION_KEY] = stored  # removed before anything else is checked: a state is used once, even a bad one
    if flow is None:
        raise AppError(
            400,
            "OAUTH_STATE_INVALID",
            "This connection was not started here, was already used, or was started by another user or browser.",
        )
    if flow["expires_at"] <= time.time():
        raise AppError(400, "OAUTH_STATE_EXPIRED", "This connection took too long and expired; start it again.")
    if flow["user"] != str(user.pk) or flow["type"] != kind:
        raise AppError(400, "OAUTH_STATE_INVALID", "This connection was started by another user or for another type.")
    # Two requests of one browser (a double click) both read the session before either saves it: the shared
    # cache lets only the first one through.
    spent = f"apertur-oauth-state:{hashlib.sha256(state.encode()).hexdigest()}"
    if not cache.add(spent, True, timeout=settings.APERTUR_OAUTH_STATE_TTL_SECONDS + 60):
        raise AppError(400, "OAUTH_STATE_INVALID", "This connection was already used; start it again.")
    return flow


def _store(*, kind: str, project: Project, flow: dict[str, Any], token: OAuthToken) -> Destination:
    if flow["destination"]:
        destination = Destination.objects.alive().filter(pk=flow["destination"], project=project, type=kind).first()
        if destination is None:
            raise AppError(400, "OAUTH_STATE_INVALID", "The destination to reconnect no longer exists.")
        return services.destination_reconnect(destination=destination, token=token.model_dump())
    return services.destination_connect(
        project=project, type=kind, name=flow["name"] or oauth_backend_class(kind).label(), token=token.model_dump()
    )


def connect_disconnect(*, user: AbstractBaseUser, destination: Destination) -> DisconnectOutcome:
    """Forget the tokens, then revoke the grant at the provider where it has a revoke endpoint. The destination
    stays (its history, its place in keys' defaults) and needs reconnecting; deleting it is a separate action.

    The tokens are taken out under the secrets lock first, so what is revoked is the grant as stored at that
    moment (a worker may have rotated the refresh token since `destination` was loaded) and no worker can refresh
    it afterwards. The revocation then runs on that taken-out copy: a provider that revokes with a valid access
    token (Dropbox) may need a refresh first, which stays in the copy. The tokens are forgotten even when
    revoking fails: the user asked to cut the link, and a provider that cannot be reached now should not keep a
    working grant in our database. The page says so."""
    backend_type = oauth_backend_class(destination.type)
    ensure_can_manage(user=user, project=destination.project)
    removed = services.destination_disconnect(destination=destination)
    revoked, revoke_error = False, None
    if removed.get("token") and backend_type.endpoint("revoke_url"):
        with Deadline(settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT) as deadline:
            try:
                config = backend_type.Config.model_validate(merge_secrets(destination.config, removed))
                context = AttemptContext(secrets=MemorySecretsStore(removed), deadline=deadline)
                backend_type(config, context).revoke_grant()
                revoked = True
            except DeliveryError as error:
                revoke_error = error.message
            except ConfigValidationError:
                revoke_error = "the stored configuration no longer validates"
            except Exception as error:  # the tokens are gone already: the page must still answer
                # Not the text, which may quote the provider's answer: the type and where it was raised.
                logger.warning(
                    "revoking %s grant: %s\n%s",
                    destination.type,
                    type(error).__name__,
                    "".join(traceback.format_tb(error.__traceback__)),
                )
                revoke_error = f"revoking failed unexpectedly ({type(error).__name__})"
    return DisconnectOutcome(revoked=revoked, revoke_error=revoke_error)
