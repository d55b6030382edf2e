"""OneDrive (personal, work or school) and SharePoint document libraries through Microsoft Graph:
docs/destinations.md "OneDrive".

Tokens come from MSAL (`msal.ConfidentialClientApplication.acquire_token_by_refresh_token`), whose `http_client` is
the outbound gate's token-endpoint session; its authority is derived from the `token_url` setting, so tests point it
at a local server. Graph itself is called with `requests` through `provider_session()`: Microsoft's Python Graph SDK
is async on httpx and kiota, and the few calls needed here are plain REST.

One attempt:
1. the folders of the path are found or created one level at a time (`POST …/children` with conflict behaviour
   `fail`, then a look-up by path on 409), and their ids cached; a cached folder deleted behind our back answers 404,
   which drops the cache and makes them again. Graph documents path-addressed upload (`root:/{parent-path}/{name}`)
   but not that it creates missing parents, so the folders are made explicitly.
2. an image up to `APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES` (4 MiB, Graph's limit for simple upload) is one
   `PUT …/items/{folder-id}:/{name}:/content`; a larger one goes through an upload session in chunks that are
   multiples of 320 KiB, as Graph requires. A chunk whose connection drops is resumed from the session's
   `nextExpectedRanges`. Both use conflict behaviour `replace`, so a retry replaces the file rather than adding
   "name 1.jpg".
"""

import functools
import re
import threading
from collections import OrderedDict
from typing import IO, Annotated, Any, ClassVar
from urllib.parse import quote

import msal
import requests
from django.conf import settings
from pydantic import Field, field_validator

from apertur.http import provider_session, token_endpoint_session
from destinations.backends import oauth
from destinations.backends.base import DeliveryError, DeliveryReceipt, StagedImage
from destinations.backends.microsoft_graph import FolderGone, Graph, first_missing_offset
from destinations.backends.oauth import OAuthBackend, OAuthConfig, OAuthEndpoints, OAuthToken
from destinations.paths import DEFAULT_PATH_TEMPLATE, image_path, normalise_path

# Graph requires upload-session fragments in multiples of 320 KiB (except the last):
# https://learn.microsoft.com/graph/api/driveitem-createuploadsession#upload-bytes-to-the-upload-session
CHUNK_ALIGNMENT = 320 * 1024
# Connections dropped mid-chunk that one attempt resumes before it gives up (the next attempt starts afresh).
CHUNK_RESUMES_PER_ATTEMPT = 3
# MSAL adds these itself and refuses them in a token request.
MSAL_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
TOKEN_PATH_SUFFIX = "/oauth2/v2.0/token"  # noqa: S105 (a URL path, not a secret)
# Token errors that only the user can fix by connecting again; `interaction_required` is Microsoft's for a new
# consent or MFA prompt (AADSTS65001, AADSTS50076). https://learn.microsoft.com/entra/identity-platform/reference-error-codes
MICROSOFT_RECONNECT_ERRORS = oauth.RECONNECT_ERRORS | {"interaction_required"}
FOLDER_CACHE_SIZE = 4096
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class OneDriveConfig(OAuthConfig):
    driveId: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    folderPath: str = "/Apertur"

    @field_validator("driveId")
    @classmethod
    def drive_id_is_one_segment(cls, value: str | None) -> str | None:
        if value is not None and (_CONTROL_CHARACTERS.search(value) or "/" in value or "?" in value or "#" in value):
            raise ValueError("must be a drive id as Graph gives it (no '/', '?', '#' or control characters)")
        return value

    @field_validator("folderPath")
    @classmethod
    def folder_path_has_no_control_characters(cls, value: str) -> str:
        if _CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain control characters")
        return value


class OneDriveBackend(OAuthBackend):
    type = "onedrive"
    provider = "onedrive"
    display_name = "OneDrive"
    Config = OneDriveConfig
    config: OneDriveConfig
    # The `common` tenant takes personal and work or school accounts.
    # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
    endpoints = OAuthEndpoints(
        authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",  # noqa: S106 (a URL)
        api_base="https://graph.microsoft.com/v1.0",
    )
    # Files.ReadWrite.All rather than Files.ReadWrite: `driveId` may name a shared drive or SharePoint library.
    # Microsoft has no endpoint that revokes one grant; the user removes the app under account → privacy → apps.
    scopes = ("offline_access", "Files.ReadWrite.All")
    supports_pkce: ClassVar[bool] = True
    authorize_params: ClassVar[dict[str, str]] = {}

    # Folder path → Graph item id, per destination (process-wide; a deleted folder answers 404 and is forgotten).
    _shared_folder_ids: ClassVar[OrderedDict[tuple[str, str, str], str]] = OrderedDict()
    _shared_folder_ids_lock = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own_folder_ids: dict[tuple[str, str, str], str] = {}

    def remote_path(self, image: StagedImage) -> str:
        return normalise_path(f"{self.config.folderPath}/{image_path(DEFAULT_PATH_TEMPLATE, image)}")

    def drive_url(self) -> str:
        base = self.endpoint("api_base").rstrip("/")
        return f"{base}/drives/{quote(self.config.driveId, safe='')}" if self.config.driveId else f"{base}/me/drive"

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        *folders, name = path.split("/")
        with provider_session() as session:
            graph = Graph(session, self.drive_url(), self.context.deadline)

            def upload(access_token: str) -> dict[str, Any]:
                graph.access_token = access_token
                try:
                    return self._upload(graph, self._folder_id(graph, folders), name, image)
                except FolderGone:
                    self._forget_folders(folders)
                    try:
                        return self._upload(graph, self._folder_id(graph, folders), name, image)
                    except FolderGone as error:
                        raise DeliveryError("OneDrive lost the folder again while uploading into it") from error

            try:
                item = self.with_access_token(upload)
            except requests.RequestException as error:
                raise DeliveryError(f"could not reach Microsoft Graph: {type(error).__name__}") from error
        if item.get("size") != image.size_bytes:
            raise DeliveryError(f"OneDrive stored {item.get('size')} bytes of {image.size_bytes}")
        return DeliveryReceipt(remote_reference=item.get("webUrl") or f"onedrive:/{path}", http_status=graph.status)

    # --- folders -------------------------------------------------------------------------------------------

    def _folder_cache(self) -> tuple[dict[tuple[str, str, str], str], str]:
        if self.context.destination_id:
            return self._shared_folder_ids, self.context.destination_id
        return self._own_folder_ids, ""

    def _folder_id(self, graph: Graph, folders: list[str]) -> str:
        """The id of the folder at `folders` (a list of names below the drive's root), made where missing."""
        cache, owner = self._folder_cache()
        parent = "root"
        for depth in range(1, len(folders) + 1):
            key = (owner, graph.drive_url, "/".join(folders[:depth]).lower())  # OneDrive names ignore case
            with self._shared_folder_ids_lock:
                cached = cache.get(key)
            if cached is None:
                cached = graph.folder(parent, folders[depth - 1])
                with self._shared_folder_ids_lock:
                    cache[key] = cached
                    if cache is self._shared_folder_ids and len(cache) > FOLDER_CACHE_SIZE:
                        self._shared_folder_ids.popitem(last=False)
            parent = cached
        return parent

    def _forget_folders(self, folders: list[str]) -> None:
        cache, owner = self._folder_cache()
        with self._shared_folder_ids_lock:
            for depth in range(1, len(folders) + 1):
                cache.pop((owner, self.drive_url(), "/".join(folders[:depth]).lower()), None)

    # --- uploads -------------------------------------------------------------------------------------------

    def _upload(self, graph: Graph, folder_id: str, name: str, image: StagedImage) -> dict[str, Any]:
        if image.size_bytes <= settings.APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES:
            with image.open() as stream:
                return graph.simple_upload(folder_id, name, stream, image.size_bytes, image.mime_type)
        upload_url = graph.create_upload_session(folder_id, name)
        try:
            return self._send_chunks(graph, upload_url, image)
        except BaseException:
            graph.cancel_upload_session(upload_url)  # frees the space Graph holds for it; best effort
            raise

    def _send_chunks(self, graph: Graph, upload_url: str, image: StagedImage) -> dict[str, Any]:
        chunk_size = onedrive_chunk_size()
        resumes = 0
        offset = 0
        with image.open() as stream:
            while True:
                chunk = _read_at(stream, offset, min(chunk_size, image.size_bytes - offset))
                try:
                    answer = graph.put_chunk(upload_url, chunk, offset, image.size_bytes)
                except (requests.ConnectionError, requests.Timeout):
                    if resumes >= CHUNK_RESUMES_PER_ATTEMPT or self.context.deadline.remaining() <= 0:
                        raise
                    resumes += 1
                    # Graph keeps every complete fragment; ask where to go on from.
                    offset = graph.next_expected_offset(upload_url)
                    continue
                if "id" in answer:
                    return answer
                offset = first_missing_offset(answer)

    # --- tokens --------------------------------------------------------------------------------------------

    def _request_refresh(self, current: OAuthToken) -> OAuthToken:
        """The refresh through MSAL (the base's plain form POST is the same RFC 6749 grant; MSAL adds Microsoft's
        client info and telemetry and reads AADSTS errors). Microsoft rotates the refresh token on every refresh;
        the base saves the new one under the destination's lock."""
        if not current.refresh_token:
            raise DeliveryError("onedrive gave no refresh token; reconnect the destination", needs_reconnect=True)
        if self.context.deadline.remaining() < oauth.TOKEN_REQUEST_TIMEOUT_SECONDS:
            # As in the base: never cut a refresh half-way, which could lose the rotated refresh token.
            raise DeliveryError("too little time left in this attempt to refresh the onedrive token safely")
        provider = self.provider_settings()
        if not self.is_configured():
            # The operator's settings are at fault, not the delivery: once they are fixed, the retries deliver.
            raise DeliveryError("onedrive is not configured on this server (client id or secret missing)")
        try:
            with token_endpoint_session() as session:
                # MSAL takes no timeout with its own http_client, and the gate follows no redirects.
                session.request = functools.partial(session.request, timeout=oauth.TOKEN_REQUEST_TIMEOUT_SECONDS)
                session.max_redirects = 0
                application = msal.ConfidentialClientApplication(
                    provider["client_id"],
                    client_credential=provider["client_secret"],
                    authority=self.authority(),
                    instance_discovery=False,  # no look-up at login.microsoftonline.com for our own authority
                    http_client=session,
                )
                result = application.acquire_token_by_refresh_token(current.refresh_token, scopes=self.msal_scopes())
        except (requests.RequestException, msal.exceptions.MsalError, *REFRESH_ANSWER_ERRORS) as error:
            # MSAL's OpenID discovery refused or unreadable, or a token answer MSAL itself could not read (an
            # expires_in of Infinity overflows its cache); its text may quote the answer, so it is not shown.
            raise DeliveryError(f"could not refresh the onedrive token: {type(error).__name__}") from error
        return _token_from(result, current)

    @classmethod
    def is_configured(cls) -> bool:
        """Microsoft issues web apps a client secret, and MSAL's confidential client cannot refresh without it."""
        provider = cls.provider_settings()
        return bool(provider.get("client_id") and provider.get("client_secret"))

    @classmethod
    def authority(cls) -> str:
        """MSAL's authority (`https://login.microsoftonline.com/common`), from the token URL setting."""
        token_url = cls.endpoint("token_url")
        if not token_url.endswith(TOKEN_PATH_SUFFIX):
            raise DeliveryError(
                f"APERTUR_OAUTH_ONEDRIVE_TOKEN_URL must end with {TOKEN_PATH_SUFFIX} (a Microsoft identity platform "
                "v2.0 token endpoint)"
            )
        return token_url.removesuffix(TOKEN_PATH_SUFFIX)

    @classmethod
    def msal_scopes(cls) -> list[str]:
        return [scope for scope in cls.scopes if scope not in MSAL_RESERVED_SCOPES]


# What MSAL raises on a token answer it cannot read (an expires_in of Infinity overflows its cache).
# RuntimeError: MSAL's OpenID discovery that got no usable answer, and its id-token checks.
REFRESH_ANSWER_ERRORS = (*oauth.UNREADABLE_ANSWER_ERRORS, OverflowError, RuntimeError)


def _token_from(result: Any, current: OAuthToken) -> OAuthToken:
    if not isinstance(result, dict):
        raise DeliveryError("onedrive's token endpoint answered something that is not a token answer")
    error = result.get("error")
    if error:
        error = error if isinstance(error, str) and oauth.ERROR_CODE_PATTERN.fullmatch(error) else "unreadable error"
        # AADSTS codes say why (70008 expired, 50173 password changed, 700082 inactive…); the description may
        # name the user, so only the numbers are kept.
        error_codes = result.get("error_codes")
        numbers = [code for code in error_codes if isinstance(code, int)] if isinstance(error_codes, list) else []
        codes = ", ".join(f"AADSTS{code}" for code in numbers[:5])
        detail = f"{error}, {codes}" if codes else error
        if error in MICROSOFT_RECONNECT_ERRORS:
            raise DeliveryError(f"onedrive refused the refresh token ({detail})", needs_reconnect=True)
        if error in {"invalid_client", "unauthorized_client"}:
            raise DeliveryError(
                f"onedrive refused this server's client credentials ({detail}); check APERTUR_OAUTH_ONEDRIVE_* settings"
            )
        raise DeliveryError(f"onedrive's token endpoint answered {detail}")
    # An unusable answer raises TokenAnswerUnusable, which the base turns into a failed attempt after keeping a
    # rotated refresh token.
    return oauth.token_from_answer(result, provider="onedrive", previous_refresh_token=current.refresh_token)


def onedrive_chunk_size() -> int:
    """The setting, rounded down to whole 320 KiB units (at least one)."""
    return max(settings.APERTUR_ONEDRIVE_CHUNK_SIZE_BYTES // CHUNK_ALIGNMENT, 1) * CHUNK_ALIGNMENT


def _read_at(stream: IO[bytes], offset: int, size: int) -> bytes:
    stream.seek(offset)
    data = stream.read(size)
    if len(data) != size:
        raise DeliveryError("the staged image is shorter than its recorded size")
    return data
