"""Dropbox destination (type dropbox), on the official `dropbox` SDK and the OAuth base (docs/destinations.md
"Dropbox").

How the SDK is used:
- its requests go through a session from `provider_session()` (apertur/http.py): Dropbox is a host the operator
  configured, not a user, so no address check, but every socket is under the attempt's deadline;
- its URLs come from the settings' `api_base` and `upload_base` (APERTUR_OAUTH_DROPBOX_API_BASE / _UPLOAD_BASE):
  the SDK builds `https://<host>/2/<route>` from hosts fixed at import time, so `_SettingsDropbox` builds the route
  URL from the configured bases instead — the one method the SDK has for it;
- its own retries are off (an attempt is one try; retries belong to the delivery schedule), and so is its own
  token refresh: the OAuth base refreshes under the destination's lock and saves a rotated refresh token, which
  the SDK's refresh would do neither of. The SDK is given the access token only.

One attempt: an image up to APERTUR_DROPBOX_UPLOAD_THRESHOLD_BYTES is one `files/upload`; a larger one goes
through an upload session (`files/upload_session/start`, `append_v2`, `finish`) in chunks of
APERTUR_DROPBOX_CHUNK_SIZE_BYTES. The SDK takes a request body only as bytes, so the threshold and the chunk size
bound what an attempt holds in memory. Every request carries the Dropbox content hash of its body (the SDK adds
it), which Dropbox verifies. The write mode is `overwrite`, so a retry replaces the file instead of adding
"name (1).jpg". Folders are not created separately: `files/upload` and `upload_session/finish` create the missing
parent folders themselves, so there are no folder ids to cache and a folder deleted behind our back is simply
made again by the next upload.
"""

import re
from collections.abc import Callable
from typing import IO, Any, ClassVar, TypeVar

import requests
from django.conf import settings
from dropbox import Dropbox
from dropbox.exceptions import (
    ApiError,
    AuthError,
    BadInputError,
    DropboxException,
    HttpError,
    InternalServerError,
    PathRootError,
    RateLimitError,
)
from dropbox.files import CommitInfo, UploadSessionCursor, WriteMode
from dropbox.session import API_CONTENT_HOST, API_HOST
from pydantic import field_validator
from stone.backends.python_rsrc.stone_validators import ValidationError

from apertur.http import USER_AGENT, provider_session
from destinations.backends.base import DeliveryError, DeliveryReceipt, StagedImage, parse_retry_after
from destinations.backends.oauth import (
    UNREADABLE_ANSWER_ERRORS,
    AccessTokenRejected,
    OAuthBackend,
    OAuthConfig,
    OAuthEndpoints,
)
from destinations.paths import normalise_path

T = TypeVar("T")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# 401 answers that a refreshed access token can cure; any other (missing_scope, user_suspended …) needs the user.
# https://www.dropbox.com/developers/documentation/http/documentation#error-handling
REFRESHABLE_AUTH_ERRORS = frozenset({"expired_access_token", "invalid_access_token"})
# Write errors (https://www.dropbox.com/developers/documentation/http/documentation#files-upload) that a retry
# cannot fix without the user changing something: the path is taken by a folder or lies below a file, the name is
# refused, the app may not write there.
PERMANENT_WRITE_ERRORS = frozenset(
    {"conflict", "malformed_path", "disallowed_name", "no_write_permission", "team_folder", "operation_suppressed"}
)
# Errors of the upload routes themselves that retrying cannot fix: the threshold or chunk size is above Dropbox's
# 150 MiB per request, or the account's encryption refuses API uploads.
PERMANENT_UPLOAD_ERRORS = frozenset({"payload_too_large", "encryption_not_supported", "properties_error"})


class DropboxConfig(OAuthConfig):
    """`folderPath`, the folder images go to (default `/Apps/Apertur`; docs/api.md "Destination types"), and the
    connection's token."""

    folderPath: str = "/Apps/Apertur"

    @field_validator("folderPath")
    @classmethod
    def no_control_characters(cls, value: str) -> str:
        if _CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain control characters")
        return value


class _SettingsDropbox(Dropbox):
    """The SDK's client with its route URLs on the configured bases and its token refresh left to the OAuth base."""

    def __init__(self, *, bases: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bases = bases

    def _get_route_url(self, hostname: str, route_name: str) -> str:
        return f"{self._bases[hostname].rstrip('/')}/{self._API_VERSION}/{route_name}"

    def refresh_access_token(self, host: str = API_HOST, scope: list[str] | None = None) -> None:
        # The SDK calls this on `expired_access_token`; the OAuth base refreshes (with_access_token).
        raise AccessTokenRejected()


class DropboxBackend(OAuthBackend):
    type = "dropbox"
    provider = "dropbox"
    Config = DropboxConfig
    config: DropboxConfig
    endpoints = OAuthEndpoints(
        authorize_url="https://www.dropbox.com/oauth2/authorize",
        token_url="https://api.dropboxapi.com/oauth2/token",  # noqa: S106 (a URL, not a password)
        api_base="https://api.dropboxapi.com",
        upload_base="https://content.dropboxapi.com",
        revoke_url="https://api.dropboxapi.com/2/auth/token/revoke",
    )
    # https://developers.dropbox.com/oauth-guide: an offline grant carries a refresh token; PKCE (S256) is
    # supported, and scoped apps ask for the scopes they need.
    scopes = ("files.content.write",)
    authorize_params: ClassVar[dict[str, str]] = {"token_access_type": "offline"}
    supports_pkce: ClassVar[bool] = True

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        # `path` is below `folderPath` (the default template, or check()'s test image). Dropbox paths start at "/":
        # the root of the user's Dropbox, or the app's own folder for an app with "App folder" access.
        dropbox_path = "/" + normalise_path(f"{self.config.folderPath}/{path}")
        with provider_session() as session, image.open() as stream:
            if image.size_bytes <= settings.APERTUR_DROPBOX_UPLOAD_THRESHOLD_BYTES:
                data = _read_exactly(stream, image.size_bytes)
                metadata = self._call(
                    session,
                    "files/upload",
                    lambda client: client.files_upload(data, dropbox_path, mode=WriteMode.overwrite, mute=True),
                )
            else:
                metadata = self._upload_in_session(session, stream, image.size_bytes, dropbox_path)
        return DeliveryReceipt(remote_reference=f"dropbox:{metadata.path_display or dropbox_path}", http_status=200)

    def revoke_grant(self) -> None:
        """Revoke the connection's grant at Dropbox (`auth/token/revoke`): the access token, its refresh token and
        every access token issued for it. For disconnecting; a grant Dropbox no longer knows counts as revoked."""
        with provider_session() as session:
            try:
                self._call(session, "auth/token/revoke", lambda client: client.auth_token_revoke())
            except DeliveryError as error:
                if not error.needs_reconnect:
                    raise

    def _upload_in_session(self, session: requests.Session, stream: IO[bytes], size: int, path: str) -> Any:
        """Start a session with the first chunk, append the middle ones, finish with the last one, which commits the
        file at `path`. A session cut half-way is left to expire at Dropbox (after 7 days); the retry starts anew."""
        chunk_size = settings.APERTUR_DROPBOX_CHUNK_SIZE_BYTES
        first = _read_exactly(stream, min(chunk_size, size))
        started = self._call(
            session, "files/upload_session/start", lambda client: client.files_upload_session_start(first)
        )
        cursor = UploadSessionCursor(session_id=started.session_id, offset=len(first))
        while size - cursor.offset > chunk_size:
            chunk = _read_exactly(stream, chunk_size)
            self._call(
                session,
                "files/upload_session/append_v2",
                lambda client, chunk=chunk, cursor=cursor: client.files_upload_session_append_v2(chunk, cursor),
            )
            cursor = UploadSessionCursor(session_id=cursor.session_id, offset=cursor.offset + len(chunk))
        last = _read_exactly(stream, size - cursor.offset)
        commit = CommitInfo(path=path, mode=WriteMode.overwrite, mute=True)
        return self._call(
            session,
            "files/upload_session/finish",
            lambda client: client.files_upload_session_finish(last, cursor, commit),
        )

    def _call(self, session: requests.Session, route: str, request: Callable[[Dropbox], T]) -> T:
        """One SDK request with the current access token; a 401 refreshes it once (OAuthBackend.with_access_token).
        Every other failure becomes a DeliveryError saying what Dropbox answered."""

        def with_token(access_token: str) -> T:
            client = self._client(session, access_token)
            answers: list[tuple[int, str | None]] = []

            def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                answers.append((response.status_code, response.headers.get("Retry-After")))

            session.hooks["response"].append(remember)
            try:
                return request(client)
            except AuthError as error:
                tag = _summary(error.error)
                if tag.split("/")[0] in REFRESHABLE_AUTH_ERRORS:
                    raise AccessTokenRejected() from error
                raise self._reconnect(f"Dropbox refused access during {route} ({tag})") from error
            except (ValidationError, *UNREADABLE_ANSWER_ERRORS) as error:
                # Before any answer, the SDK refused our own argument (a path it cannot take): permanent, below.
                # After one, it could not read Dropbox's answer (a Retry-After that is an HTTP date, a body that
                # does not match the route's schema): that says nothing of the next answer.
                if not answers:
                    raise
                if answers[-1][0] == 401:
                    # An expired token's answer the SDK could not read (it insists on one exact content type).
                    raise AccessTokenRejected() from error
                raise _unreadable_answer(route, *answers[-1]) from error
            finally:
                session.hooks["response"].remove(remember)

        try:
            return self.with_access_token(with_token)
        except (DropboxException, ValidationError, requests.RequestException) as error:
            raise _delivery_error(route, error) from error

    def _client(self, session: requests.Session, access_token: str) -> Dropbox:
        return _SettingsDropbox(
            bases={API_HOST: self.endpoint("api_base"), API_CONTENT_HOST: self.endpoint("upload_base")},
            oauth2_access_token=access_token,
            max_retries_on_error=0,
            max_retries_on_rate_limit=0,
            user_agent=USER_AGENT,
            session=session,
            timeout=self.context.deadline.timeout(settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS),
        )


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """`size` bytes of the staged stream: a stream may return fewer per read (a staging bucket's file), and a chunk
    sent short would commit a truncated file."""
    parts, missing = [], size
    while missing > 0:
        part = stream.read(missing)
        if not part:
            raise DeliveryError("the staged image ended before its recorded size")
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _delivery_error(route: str, error: Exception) -> DeliveryError:
    """What a failed request means for the delivery (docs/destinations.md "Dropbox")."""
    if isinstance(error, RateLimitError):
        # Dropbox sends the wait in the body (retry_after) and the Retry-After header; the SDK takes either.
        reason = _summary(error.error) if error.error is not None else "too_many_requests"
        return _rate_limited(f"Dropbox rate limit during {route} ({reason})", error.backoff)
    if isinstance(error, ApiError):
        summary = _summary(error.error)
        tags = set(summary.split("/"))
        said = f"Dropbox refused {route}: {summary}"
        if error.user_message_text:
            said += f" ({error.user_message_text[:200]})"
        # A write error is nested in the route's own error (path/<write error>, lookup_failed/…).
        permanent = ("path" in tags and bool(tags & PERMANENT_WRITE_ERRORS)) or bool(tags & PERMANENT_UPLOAD_ERRORS)
        return DeliveryError(said, permanent=permanent, http_status=409)
    if isinstance(error, BadInputError | PathRootError):
        # 400: Dropbox refused the request itself (a path it cannot take, a malformed argument): the same request
        # fails every time.
        body = str(getattr(error, "message", "") or getattr(error, "error", ""))[:300]
        return DeliveryError(f"Dropbox refused {route} as malformed: {body}", permanent=True, http_status=400)
    if isinstance(error, InternalServerError | HttpError):
        return DeliveryError(f"HTTP {error.status_code} from Dropbox for {route}", http_status=error.status_code)
    if isinstance(error, ValidationError):
        return DeliveryError(f"Dropbox cannot take this path or argument ({route}): {error}", permanent=True)
    if isinstance(error, requests.Timeout):
        return DeliveryError(f"Dropbox did not answer {route} in time")
    if isinstance(error, requests.RequestException):
        return DeliveryError(f"Dropbox unreachable or connection lost during {route}: {type(error).__name__}")
    return DeliveryError(f"Dropbox failed {route}: {type(error).__name__}")


def _rate_limited(said: str, wait: object) -> DeliveryError:
    """A 429: the wait as DeliveryError bounds it (the SDK's int of a header can be a 400-digit number)."""
    failure = DeliveryError(said, http_status=429, retry_after=wait)  # type: ignore[arg-type]
    if failure.retry_after is not None:
        failure.message += f"; retry after {failure.retry_after:g} s"
        failure.args = (failure.message,)
    return failure


def _unreadable_answer(route: str, status: int, retry_after: str | None) -> DeliveryError:
    if status == 429:
        return _rate_limited(f"Dropbox rate limit during {route}", parse_retry_after(retry_after))
    said = f"Dropbox answered {route} with HTTP {status} in a form that could not be read"
    return DeliveryError(said, http_status=status)


def _summary(value: Any) -> str:
    """A Dropbox error as its `error_summary` spells it (e.g. `path/conflict/file`): the tags of the nested
    unions, through the structs that carry them (UploadWriteFailed.reason, UploadSessionFinishError's lookup)."""
    tags: list[str] = []
    while value is not None and len(tags) < 6:
        tag = getattr(value, "_tag", None)  # a stone union's selected member
        if tag is None:
            value = getattr(value, "reason", None)  # a struct wrapping the next union
            continue
        tags.append(tag)
        value = getattr(value, "_value", None)
    return "/".join(tags) or "other"
