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

import contextlib
import logging
import math
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import requests
from django.conf import settings
from pydantic import BaseModel, ConfigDict

from apertur.http import token_endpoint_session
from destinations.backends.base import BackendConfig, DeliveryError, DestinationBackend, Secret

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Refresh this long before the provider says the token expires: clocks differ and an upload takes time.
REFRESH_AHEAD_SECONDS = 120
TOKEN_REQUEST_TIMEOUT_SECONDS = 15
# Token-endpoint errors that mean the grant itself is gone: only the user can fix it, by reconnecting.
# https://www.rfc-editor.org/rfc/rfc6749#section-5.2
RECONNECT_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "access_denied", "consent_required"})
# The longest lifetime a token answer may claim: beyond it, `expires_in` is nonsense rather than a lifetime.
MAX_TOKEN_LIFETIME_SECONDS = 10 * 365 * 24 * 3600
# What a client library raises when it cannot read a provider's answer (a JSON body that is not JSON, a
# Retry-After that is a date where it expects seconds, a field of the wrong type). Raised inside a provider call,
# these say nothing about our settings: the attempt is retried (see `with_access_token`).
# RecursionError: a JSON body nested a hundred thousand deep.
UNREADABLE_ANSWER_ERRORS = (
    ValueError,
    AssertionError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    RecursionError,
)
# A token goes into an Authorization header or a form: printable ASCII without spaces (RFC 6750's b64token is
# narrower; providers' tokens stay within this), and not megabytes.
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,16384}")
# A provider's error code as it may be shown on a page: a code, not a sentence that could echo a secret back.
ERROR_CODE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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


class TokenRequestFailed(Exception):
    """The provider's token or revoke endpoint refused a request of the connect flow, or could not be reached. The
    message is safe to show: it names the provider's error code, never a token."""


class TokenAnswerInvalid(TokenRequestFailed):
    """The token endpoint answered 2xx with something that is not a usable token. The message names the field
    at fault, never its value (which may be a token)."""


class TokenAnswerUnusable(TokenAnswerInvalid):
    """A refresh answer whose access token is unusable: `salvaged` is the stored token with what could be kept of
    the answer (a rotated refresh token), its access token marked expired so the next attempt refreshes."""

    def __init__(self, message: str, salvaged: OAuthToken) -> None:
        super().__init__(message)
        self.salvaged = salvaged


class OAuthBackend(DestinationBackend):
    """Subclasses declare `provider`, `endpoints` and `scopes`, and make their API calls through
    `with_access_token`, raising AccessTokenRejected on a 401.

    The connect flow (destinations/oauth_connect.py, docs/destinations.md "Connecting an OAuth destination") reads
    `authorize_params` (the provider's extra authorise-URL parameters, e.g. the ones asking for a refresh token)
    and `supports_pkce`, and calls `exchange_code` and `revoke_grant`; a provider whose token or revoke endpoint
    departs from RFC 6749 / RFC 7009 overrides those two."""

    provider: ClassVar[str]
    endpoints: ClassVar[OAuthEndpoints]
    scopes: ClassVar[tuple[str, ...]] = ()
    authorize_params: ClassVar[dict[str, str]] = {}
    supports_pkce: ClassVar[bool] = False
    display_name: ClassVar[str] = ""  # the provider's name as its users know it ("Google Drive"); default: the type
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

    @classmethod
    def label(cls) -> str:
        return cls.display_name or cls.provider.replace("_", " ").title()

    @classmethod
    def client_credentials(cls) -> dict[str, str]:
        """This server's client id (and secret, where the provider issued one) as token-request form fields."""
        provider = cls.provider_settings()
        form = {"client_id": provider.get("client_id", "")}
        if provider.get("client_secret"):
            form["client_secret"] = provider["client_secret"]
        return form

    @classmethod
    def exchange_code(cls, *, code: str, redirect_uri: str, code_verifier: str | None) -> OAuthToken:
        """The authorization-code grant (RFC 6749 §4.1.3, with the PKCE verifier of RFC 7636 §4.5)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        form |= cls.client_credentials()
        if code_verifier:
            form["code_verifier"] = code_verifier
        response = cls._post_to_provider("token_url", form)
        body = _json_or_empty(response)
        if not 200 <= response.status_code < 300 or "access_token" not in body:
            raise TokenRequestFailed(f"{cls.provider} refused the authorization code ({_reason(body, response)})")
        return token_from_answer(body, provider=cls.provider, previous_refresh_token=None)

    @classmethod
    def _post_to_provider(cls, endpoint_name: str, form: dict[str, str]) -> requests.Response:
        try:
            with token_endpoint_session() as session:
                return session.post(
                    cls.endpoint(endpoint_name),
                    data=form,
                    headers={"Accept": "application/json"},
                    timeout=TOKEN_REQUEST_TIMEOUT_SECONDS,
                    allow_redirects=False,
                )
        except requests.RequestException as error:
            raise TokenRequestFailed(f"could not reach {cls.provider}: {type(error).__name__}") from error

    def revoke_grant(self) -> None:
        """Revoke this destination's grant at the provider, for a disconnect (RFC 7009: the refresh token, whose
        revocation ends the grant, else the access token). Does nothing without a token or a revoke endpoint;
        raises DeliveryError when the provider cannot be reached or refuses. A provider whose revocation differs
        overrides it (Dropbox revokes with the access token as a bearer)."""
        token = self.config.token
        if token is None or not self.endpoint("revoke_url"):
            return
        form = {"token": token.refresh_token or token.access_token}
        form["token_type_hint"] = "refresh_token" if token.refresh_token else "access_token"
        try:
            response = self._post_to_provider("revoke_url", form | self.client_credentials())
        except TokenRequestFailed as error:
            raise DeliveryError(str(error)) from error
        # RFC 7009 §2.2: an invalid (already revoked, expired) token is answered 200 as well.
        if not 200 <= response.status_code < 300:
            reason = _reason(_json_or_empty(response), response)
            raise DeliveryError(
                f"{self.provider} did not revoke the grant ({reason})", http_status=response.status_code
            )

    def with_access_token(self, call: Callable[[str], T]) -> T:
        """Run `call(access_token)`; on a 401, refresh once and try again; a second 401 needs a reconnect.

        A client library that cannot read the provider's answer (UNREADABLE_ANSWER_ERRORS) fails the attempt as
        a transient error: the base's guard would take its ValueError for a refused setting and fail the delivery
        for good, when the next answer may well be readable."""
        token = self.access_token()
        try:
            return self._call_reading_answers(call, token)
        except AccessTokenRejected:
            token = self.refresh_access_token(rejected=token)
        try:
            return self._call_reading_answers(call, token)
        except AccessTokenRejected as error:
            raise self._reconnect(f"{self.provider} refused a freshly refreshed access token") from error

    def _call_reading_answers(self, call: Callable[[str], T], access_token: str) -> T:
        try:
            return call(access_token)
        except requests.RequestException:
            raise  # some subclass ValueError (InvalidURL, InvalidHeader): the backend reports them as such
        except UNREADABLE_ANSWER_ERRORS as error:
            # Not the exception's text, which may quote the answer, tokens included: its type and where it was.
            where = "".join(traceback.format_tb(error.__traceback__))
            logger.warning("%s: unreadable answer (%s)\n%s", self.provider, type(error).__name__, where)
            raise DeliveryError(
                f"{self.label()} sent an answer that could not be read ({type(error).__name__})"
            ) from error

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
        unusable: DeliveryError | None = None
        try:
            with self.context.secrets.locked() as stored:
                current = OAuthToken.model_validate(stored["token"]) if stored.get("token") else None
                if current is None:
                    raise DeliveryError(f"{self.provider} is not connected", needs_reconnect=True)
                if current.access_token != rejected and current.fresh():
                    token = current  # another worker refreshed while we waited for the lock
                else:
                    try:
                        token = self._request_refresh(current)
                    except TokenAnswerUnusable as error:
                        # The answer's access token is unusable, but a rotating provider may already have replaced
                        # the refresh token: the new one is kept, or the grant would be lost.
                        token, unusable = error.salvaged, DeliveryError(str(error))
                    stored["token"] = token.model_dump()
        except DeliveryError as error:
            # Recorded after the lock's transaction ended: inside it, the failure would roll the flag back.
            if error.needs_reconnect:
                self.context.record_outcome(error=error.message, needs_reconnect=True)
            raise
        self.config = self.config.model_copy(update={"token": token})
        if unusable is not None:
            raise unusable
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
        if not self.is_configured():
            # The operator's settings, not the delivery, are at fault: once they are fixed, the retries deliver.
            raise DeliveryError(f"{self.provider} is not configured on this server (client id missing)")
        form = {"grant_type": "refresh_token", "refresh_token": current.refresh_token} | self.client_credentials()
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
        error_code = body.get("error") if isinstance(body.get("error"), str) else None
        if response.status_code in (400, 401) and error_code in RECONNECT_ERRORS:
            raise DeliveryError(f"{self.provider} refused the refresh token ({error_code})", needs_reconnect=True)
        if error_code == "invalid_client":
            # The server's client id/secret, not the user's grant: the operator must fix the settings.
            raise DeliveryError(
                f"{self.provider} refused this server's client credentials; check APERTUR_OAUTH settings",
                http_status=response.status_code,
            )
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"{self.provider}'s token endpoint answered HTTP {response.status_code}",
                http_status=response.status_code,
            )
        return token_from_answer(body, provider=self.provider, previous_refresh_token=current.refresh_token)

    def _reconnect(self, message: str) -> DeliveryError:
        # Flag the destination at once: the attempt's outcome may come later, or not at all for a stale attempt.
        self.context.record_outcome(error=message, needs_reconnect=True)
        return DeliveryError(message, needs_reconnect=True)


def token_from_answer(body: dict[str, Any], *, provider: str, previous_refresh_token: str | None) -> OAuthToken:
    """The token of a successful token-endpoint answer (RFC 6749 §5.1), checked field by field. The access token
    must be a token (TOKEN_PATTERN), else TokenAnswerInvalid — or, on a refresh (`previous_refresh_token` given),
    TokenAnswerUnusable carrying whatever refresh token the answer rotated to. A refresh token that is absent,
    empty or not a token leaves the previous one; an `expires_in` that is not a lifetime of more than
    REFRESH_AHEAD_SECONDS counts as unknown (the token is used until refused). Unchecked, a list would have been
    stored as a token, and `inf` would have made a token fresh forever."""
    refresh_token = _token_field(body, "refresh_token", provider)
    access_token = _token_field(body, "access_token", provider)
    if access_token is None:
        message = f"{provider}'s token endpoint answered without a usable access_token"
        if previous_refresh_token is None:
            raise TokenAnswerInvalid(message)
        salvaged = OAuthToken(access_token="", refresh_token=refresh_token or previous_refresh_token, expires_at=0)
        raise TokenAnswerUnusable(message, salvaged)
    return OAuthToken(
        access_token=access_token,
        # Providers that rotate (Box, Dropbox with rotation) send a new one; the others keep the old one valid.
        refresh_token=refresh_token or previous_refresh_token,
        expires_at=_expires_at(body.get("expires_in"), provider),
    )


def _token_field(body: dict[str, Any], name: str, provider: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and TOKEN_PATTERN.fullmatch(value):
        return value
    logger.warning("%s's token endpoint answered an unusable %s; ignored", provider, name)
    return None


def _expires_at(expires_in: Any, provider: str) -> float | None:
    if expires_in is None or expires_in == "":
        return None  # the provider gave no lifetime: used until refused (RFC 6749 §5.1 makes it optional)
    seconds = math.nan
    if isinstance(expires_in, int | float | str) and not isinstance(expires_in, bool):
        with contextlib.suppress(ValueError, OverflowError):
            seconds = float(expires_in)
    if not math.isfinite(seconds) or not REFRESH_AHEAD_SECONDS < seconds <= MAX_TOKEN_LIFETIME_SECONDS:
        logger.warning(
            "%s's token endpoint answered an expires_in that is not a lifetime; used until refused", provider
        )
        return None
    return time.time() + seconds


def _reason(body: dict[str, Any], response: requests.Response) -> str:
    """The provider's error code from an error answer, for messages and pages: only a code-like string
    (ERROR_CODE_PATTERN), else the HTTP status — a longer text could echo a secret back."""
    error = body.get("error")
    if isinstance(error, str) and ERROR_CODE_PATTERN.fullmatch(error):
        return error
    return f"HTTP {response.status_code}"


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}
