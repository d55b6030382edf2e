"""The base of the destinations connected by OAuth (Google Drive, Dropbox, OneDrive, Box).

A provider is declared, not coded: its endpoints (authorise, token, revoke, API base) and scopes. Every endpoint
can be overridden in settings (`APERTUR_OAUTH`, see docs/configuration.md), so tests point the real client
libraries at local servers. Tokens are secrets of the destination; this module holds the one token-refresh path:

- a token is refreshed ahead of its expiry, under the destination's secrets lock, so two workers never refresh
  at once (a provider that rotates refresh tokens would refuse the second, stale one) — the second finds the
  fresh token stored and uses it;
- a rotated refresh token is saved in the same locked step;
- `invalid_grant` (consent revoked, token expired for good) or a 401 after a refresh means the user must
  reconnect: `DeliveryError(needs_reconnect=True)`, which is not permanent, so deliveries keep their schedule and
  succeed once the destination is reconnected.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import requests
from django.conf import settings
from pydantic import BaseModel, ConfigDict

from apertur.http import token_endpoint_session
from destinations.backends.base import BackendConfig, DeliveryError, DestinationBackend, Secret

T = TypeVar("T")
# Refresh this long before the provider says the token expires: clocks differ and an upload takes time.
REFRESH_AHEAD_SECONDS = 120
TOKEN_REQUEST_TIMEOUT_SECONDS = 15
# Token-endpoint errors that mean the grant itself is gone: only the user can fix it, by reconnecting.
# https://www.rfc-editor.org/rfc/rfc6749#section-5.2
RECONNECT_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "access_denied", "consent_required"})


class OAuthToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None  # unix seconds; None: the provider gave no expiry

    def fresh(self) -> bool:
        return self.expires_at is None or self.expires_at - time.time() > REFRESH_AHEAD_SECONDS


class OAuthConfig(BackendConfig):
    """What every OAuth destination stores. The token is written by the connect flow and by refreshes, never
    taken from the API."""

    token: Annotated[OAuthToken | None, Secret(set_by_api=False)] = None


@dataclass(frozen=True)
class OAuthEndpoints:
    authorize_url: str
    token_url: str
    api_base: str
    revoke_url: str | None = None
    upload_base: str | None = None  # where a provider takes file content, when not at api_base


class AccessTokenRejected(Exception):
    """Raised by a provider call whose access token the API refused (HTTP 401)."""


class OAuthBackend(DestinationBackend):
    """Subclasses declare `provider`, `endpoints` and `scopes`, and make their API calls through
    `with_access_token`, raising AccessTokenRejected on a 401."""

    provider: ClassVar[str]
    endpoints: ClassVar[OAuthEndpoints]
    scopes: ClassVar[tuple[str, ...]] = ()
    config: OAuthConfig

    @classmethod
    def provider_settings(cls) -> dict[str, str]:
        return settings.APERTUR_OAUTH.get(cls.provider, {})

    @classmethod
    def endpoint(cls, name: str) -> str | None:
        """An endpoint URL: the settings' override, else the provider's documented one."""
        return cls.provider_settings().get(name) or getattr(cls.endpoints, name)

    @classmethod
    def is_configured(cls) -> bool:
        return bool(cls.provider_settings().get("client_id"))

    def with_access_token(self, call: Callable[[str], T]) -> T:
        """Run `call(access_token)`; on a 401, refresh once and try again; a second 401 needs a reconnect."""
        token = self.access_token()
        try:
            return call(token)
        except AccessTokenRejected:
            token = self.refresh_access_token(rejected=token)
        try:
            return call(token)
        except AccessTokenRejected as error:
            raise self._reconnect(f"{self.provider} refused a freshly refreshed access token") from error

    def access_token(self) -> str:
        token = self.config.token
        if token is None:
            raise self._reconnect(f"{self.provider} is not connected")
        if token.fresh():
            return token.access_token
        return self.refresh_access_token(rejected=token.access_token)

    def refresh_access_token(self, *, rejected: str) -> str:
        """A usable access token in place of `rejected`: the one another worker stored meanwhile, else a new one
        from the token endpoint. Runs under the destination's secrets lock."""
        try:
            with self.context.secrets.locked() as stored:
                current = OAuthToken.model_validate(stored["token"]) if stored.get("token") else None
                if current is None:
                    raise DeliveryError(f"{self.provider} is not connected", needs_reconnect=True)
                if current.access_token != rejected and current.fresh():
                    token = current  # another worker refreshed while we waited for the lock
                else:
                    token = self._request_refresh(current)
                    stored["token"] = token.model_dump()
        except DeliveryError as error:
            # Recorded after the lock's transaction ended: inside it, the failure would roll the flag back.
            if error.needs_reconnect:
                self.context.record_outcome(error=error.message, needs_reconnect=True)
            raise
        self.config = self.config.model_copy(update={"token": token})
        return token.access_token

    def _request_refresh(self, current: OAuthToken) -> OAuthToken:
        if not current.refresh_token:
            raise DeliveryError(
                f"{self.provider} gave no refresh token; reconnect the destination", needs_reconnect=True
            )
        if self.context.deadline.remaining() < TOKEN_REQUEST_TIMEOUT_SECONDS:
            # A refresh cut half-way may have rotated the refresh token at the provider without our learning the
            # new one: the user would have to reconnect. So a refresh is only started with time to finish it, and
            # then runs outside the attempt's deadline (bounded by its own timeout); the next attempt refreshes.
            raise DeliveryError(f"too little time left in this attempt to refresh the {self.provider} token safely")
        provider = self.provider_settings()
        if not provider.get("client_id"):
            raise DeliveryError(f"{self.provider} is not configured on this server (client id missing)", permanent=True)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
            "client_id": provider["client_id"],
        }
        if provider.get("client_secret"):
            form["client_secret"] = provider["client_secret"]
        try:
            with token_endpoint_session() as session:
                response = session.post(
                    self.endpoint("token_url"),
                    data=form,
                    headers={"Accept": "application/json"},
                    timeout=TOKEN_REQUEST_TIMEOUT_SECONDS,
                    allow_redirects=False,
                )
        except requests.RequestException as error:
            raise DeliveryError(f"could not reach {self.provider}'s token endpoint: {type(error).__name__}") from error
        body = _json_or_empty(response)
        error_code = body.get("error")
        if response.status_code in (400, 401) and error_code in RECONNECT_ERRORS:
            raise DeliveryError(f"{self.provider} refused the refresh token ({error_code})", needs_reconnect=True)
        if error_code == "invalid_client":
            # The server's client id/secret, not the user's grant: the operator must fix the settings.
            raise DeliveryError(
                f"{self.provider} refused this server's client credentials; check APERTUR_OAUTH settings",
                http_status=response.status_code,
            )
        if not 200 <= response.status_code < 300 or "access_token" not in body:
            raise DeliveryError(
                f"{self.provider}'s token endpoint answered HTTP {response.status_code}",
                http_status=response.status_code,
            )
        expires_in = body.get("expires_in")
        return OAuthToken(
            access_token=body["access_token"],
            # Providers that rotate (Box, Dropbox with rotation) send a new one; the others keep the old one valid.
            refresh_token=body.get("refresh_token") or current.refresh_token,
            expires_at=time.time() + float(expires_in) if expires_in else None,
        )

    def _reconnect(self, message: str) -> DeliveryError:
        # Flag the destination at once: the attempt's outcome may come later, or not at all for a stale attempt.
        self.context.record_outcome(error=message, needs_reconnect=True)
        return DeliveryError(message, needs_reconnect=True)


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
