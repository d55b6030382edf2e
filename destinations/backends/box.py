"""Box destination (docs/destinations.md "Box"): boxsdk's client (`box_sdk_gen`, boxsdk 10) on the OAuth base.

The client is pointed at Box, or at a local server in tests, only through its documented configuration: `BaseUrls`
from the settings' `api_base`/`upload_base` (APERTUR_OAUTH_BOX_*), and its HTTP goes through the outbound gate
because its network client is given the gate's requests session (`BoxNetworkClient(requests_session=...)`).
Its own retry loop is replaced by one that never retries: an attempt makes each call once, and the delivery
engine schedules retries (docs/destinations.md "The contract"). Tokens are refreshed by the OAuth base, under the
destination's lock, because Box rotates the refresh token on every refresh (the old one is dead at once).

One attempt: find or create the folders of the path below `folderId` (ids cached per destination; a folder deleted
behind our back is recreated), then upload under the image's deterministic name: one multipart upload below
APERTUR_BOX_CHUNKED_THRESHOLD_BYTES, a chunked upload session at or above it. A name already in the folder (409
`item_name_in_use`, which names the file) gets a new version of that file instead, so a retry replaces.
"""

import base64
import contextlib
import hashlib
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, ClassVar, TypeVar

from box_sdk_gen import (
    BaseUrls,
    BoxAPIError,
    BoxClient,
    BoxDeveloperTokenAuth,
    BoxNetworkClient,
    BoxSDKError,
    CreateFolderParent,
    NetworkSession,
    PreflightFileUploadCheckParent,
    RetryStrategy,
    TimeoutConfig,
    UploadFileAttributes,
    UploadFileAttributesParentField,
    UploadFileVersionAttributes,
    UploadPart,
)
from box_sdk_gen.schemas.file_full import FileFull
from django.conf import settings
from pydantic import field_validator

from apertur.http import provider_session
from destinations.backends.base import DeliveryError, DeliveryReceipt, StagedImage, parse_retry_after
from destinations.backends.folder_cache import FolderIdCache
from destinations.backends.oauth import AccessTokenRejected, OAuthBackend, OAuthConfig, OAuthEndpoints

T = TypeVar("T")
ROOT_FOLDER_ID = "0"
# A commit answered 202 (Box still processing the parts) is asked again this often, within the attempt's deadline.
COMMIT_TRIES = 5
COMMIT_WAIT_SECONDS = 1.0
FOLDER_CACHE_SIZE = 4096
ERROR_MESSAGE_LIMIT = 200


class BoxConfig(OAuthConfig):
    folderId: str = ROOT_FOLDER_ID

    @field_validator("folderId")
    @classmethod
    def folder_id_is_a_box_id(cls, value: str) -> str:
        # Box ids are decimal numbers (the folder's URL ends with it: app.box.com/folder/123); 0 is All Files.
        if not value.isascii() or not value.isdigit():
            raise ValueError("must be a Box folder id: the digits at the end of the folder's URL (0 for All Files)")
        return value


@dataclass(frozen=True)
class BoxEndpoints(OAuthEndpoints):
    upload_base: str = "https://upload.box.com/api"


class _OneAttempt(RetryStrategy):
    """Each call is made once: retries belong to the delivery engine, which honours Retry-After across attempts."""

    def should_retry(self, fetch_options: Any, fetch_response: Any, attempt_number: int) -> bool:
        return False

    def retry_after(self, fetch_options: Any, fetch_response: Any, attempt_number: int) -> float:
        return 0.0


FOLDER_IDS = FolderIdCache(FOLDER_CACHE_SIZE)


class BoxBackend(OAuthBackend):
    type = "box"
    provider = "box"
    Config = BoxConfig
    config: BoxConfig
    endpoints = BoxEndpoints(
        authorize_url="https://account.box.com/api/oauth2/authorize",
        token_url="https://api.box.com/oauth2/token",  # noqa: S106 (a URL, not a password)
        api_base="https://api.box.com",
        revoke_url="https://api.box.com/oauth2/revoke",
    )
    # Box issues a refresh token with every code (no offline-access parameter) and documents no PKCE.
    scopes = ("root_readwrite",)
    authorize_params: ClassVar[dict[str, str]] = {}
    supports_pkce: ClassVar[bool] = False

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        *folders, name = path.split("/")
        with provider_session() as http:
            file = self.with_access_token(lambda token: self._attempt(self._client(token, http), image, folders, name))
        return DeliveryReceipt(remote_reference=f"box:file/{file.id}", http_status=201)

    def _client(self, access_token: str, http: Any) -> BoxClient:
        timeout_ms = int(self.context.deadline.timeout(settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS) * 1000) or 1
        network = NetworkSession(
            network_client=BoxNetworkClient(requests_session=http),
            retry_strategy=_OneAttempt(),
            base_urls=BaseUrls(
                base_url=self.endpoint("api_base"),
                upload_url=self.endpoint("upload_base"),
                oauth_2_url=self.endpoint("authorize_url").rsplit("/", 1)[0],
            ),
            timeout_config=TimeoutConfig(connection_timeout_ms=timeout_ms, read_timeout_ms=timeout_ms),
        )
        return BoxClient(BoxDeveloperTokenAuth(access_token), network_session=network)

    def _attempt(self, client: BoxClient, image: StagedImage, folders: list[str], name: str) -> FileFull:
        try:
            parent = self._folder(client, folders)
            try:
                return self._upload(client, parent, name, image)
            except BoxAPIError as error:
                if _status(error) != 404 or not folders:
                    raise
                # A folder we had cached was deleted behind our back: find or create the path afresh, once.
                FOLDER_IDS.forget(self._cache_owner())
                return self._upload(client, self._folder(client, folders), name, image)
        except BoxAPIError as error:
            if _status(error) == 401:
                raise AccessTokenRejected() from error
            raise self._delivery_error(error) from error
        except BoxSDKError as error:
            cause = type(error.error).__name__ if error.error is not None else error.message[:ERROR_MESSAGE_LIMIT]
            raise DeliveryError(f"could not reach Box: {cause}") from error

    def _cache_owner(self) -> str:
        # Folder ids belong to one Box account: a backend with no stored destination shares them with no other.
        if self.context.destination_id:
            return self.context.destination_id
        if not hasattr(self, "_unstored_owner"):
            self._unstored_owner = f"unstored:{uuid.uuid4().hex}"
        return self._unstored_owner

    def _folder(self, client: BoxClient, folders: list[str]) -> str:
        """The id of the folder at `folders` below the configured folder, creating what is missing."""
        parent = self.config.folderId
        for name in folders:
            key = (self._cache_owner(), parent, name.casefold())  # Box compares names without regard to case
            folder_id = FOLDER_IDS.get(key)
            if folder_id is None:
                folder_id = self._create_folder(client, parent, name)
                FOLDER_IDS.put(key, folder_id)
            parent = folder_id
        return parent

    def _create_folder(self, client: BoxClient, parent: str, name: str) -> str:
        try:
            return client.folders.create_folder(name, CreateFolderParent(id=parent)).id
        except BoxAPIError as error:
            conflict = _conflict(error)
            if conflict is None:
                raise
            if conflict.get("type") != "folder":
                raise DeliveryError(
                    f"a Box {conflict.get('type', 'item')} named {name!r} is where the folder should be",
                    permanent=True,
                    http_status=409,
                ) from error
            return str(conflict["id"])

    def _upload(self, client: BoxClient, parent: str, name: str, image: StagedImage) -> FileFull:
        if image.size_bytes >= settings.APERTUR_BOX_CHUNKED_THRESHOLD_BYTES:
            return self._upload_in_parts(client, parent, name, image)
        # Box checks the bytes against this SHA-1 (its Content-MD5 header carries a SHA-1); small files are read
        # twice for it rather than held in memory.
        sha1 = _sha1_of(image.open).hexdigest()
        existing = self._existing_file(client, parent, name, image) if image.attempt > 1 else None
        if existing is None:
            with image.open() as stream:
                try:
                    files = client.uploads.upload_file(
                        UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=parent)),
                        stream,
                        file_file_name=name,
                        file_content_type=image.mime_type,
                        content_md_5=sha1,
                    )
                    return files.entries[0]
                except BoxAPIError as error:
                    existing = _conflicting_file(error, name)
                    if existing is None:
                        raise
        with image.open() as stream:
            files = client.uploads.upload_file_version(
                existing,
                UploadFileVersionAttributes(name=name),
                stream,
                file_file_name=name,
                file_content_type=image.mime_type,
                content_md_5=sha1,
            )
        return files.entries[0]

    def _existing_file(self, client: BoxClient, parent: str, name: str, image: StagedImage) -> str | None:
        """On a retry the file is likely there already, and Box may answer the upload's 409 only after the whole
        body: its preflight check (`OPTIONS /files/content`) names the file first, so the bytes go once."""
        try:
            client.uploads.preflight_file_upload_check(
                name=name, size=image.size_bytes, parent=PreflightFileUploadCheckParent(id=parent)
            )
        except BoxAPIError as error:
            existing = _conflicting_file(error, name)
            if existing is None:
                raise
            return existing
        return None

    def _upload_in_parts(self, client: BoxClient, parent: str, name: str, image: StagedImage) -> FileFull:
        uploads = client.chunked_uploads
        try:
            session = uploads.create_file_upload_session(parent, image.size_bytes, name)
        except BoxAPIError as error:
            existing = _conflicting_file(error, name)
            if existing is None:
                raise
            session = uploads.create_file_upload_session_for_existing_file(existing, image.size_bytes, file_name=name)
        try:
            parts, whole = self._send_parts(client, session.id, session.part_size, image)
            return self._commit(client, session.id, parts, f"sha={_base64(whole.digest())}")
        except BaseException:
            # Best effort: an abandoned session would otherwise hold its parts at Box until it expires (7 days).
            with contextlib.suppress(BoxSDKError):
                uploads.delete_file_upload_session_by_id(session.id)
            raise

    def _send_parts(
        self, client: BoxClient, session_id: str, part_size: int, image: StagedImage
    ) -> tuple[list[UploadPart], Any]:
        whole, parts, offset, size = hashlib.sha1(usedforsecurity=False), [], 0, image.size_bytes
        with image.open() as stream:
            while offset < size:
                chunk = _read_exactly(stream, min(part_size, size - offset))
                if not chunk:
                    raise DeliveryError(f"the staged image ended at byte {offset} of {size}")
                whole.update(chunk)
                uploaded = client.chunked_uploads.upload_file_part(
                    session_id,
                    io.BytesIO(chunk),
                    f"sha={_base64(hashlib.sha1(chunk, usedforsecurity=False).digest())}",
                    f"bytes {offset}-{offset + len(chunk) - 1}/{size}",
                )
                parts.append(uploaded.part)
                offset += len(chunk)
        return parts, whole

    def _commit(self, client: BoxClient, session_id: str, parts: list[UploadPart], digest: str) -> FileFull:
        for _ in range(COMMIT_TRIES):
            files = client.chunked_uploads.create_file_upload_session_commit(session_id, parts, digest)
            if files is not None:
                return files.entries[0]
            # 202: Box is still processing the parts; the commit is to be repeated shortly.
            if self.context.deadline.remaining() < COMMIT_WAIT_SECONDS * 2:
                break
            time.sleep(COMMIT_WAIT_SECONDS)
        raise DeliveryError("Box was still processing the uploaded parts; the next attempt uploads again")

    def _delivery_error(self, error: BoxAPIError) -> DeliveryError:
        status, code = _status(error), error.response_info.code or "unknown"
        explanation = str((error.response_info.body or {}).get("message") or "")[:ERROR_MESSAGE_LIMIT]
        detail = f"Box answered HTTP {status} ({code}{': ' + explanation if explanation else ''})"
        if status == 429:
            wait = _retry_after(error)
            suffix = f"; it asked to wait {wait:g}s" if wait is not None else ""
            return DeliveryError(f"Box is rate limiting this account{suffix}", http_status=429, retry_after=wait)
        if status == 404:
            return DeliveryError(
                f"{detail}: is folder {self.config.folderId} still there and shared with the connected account?",
                http_status=status,
            )
        # A bad request or a name Box refuses fails the same way every time; the rest (permissions, quota, a
        # checksum spoilt in transit, Box's own errors) may be fixed by the user or by time.
        return DeliveryError(detail, http_status=status, permanent=status == 400)


def _status(error: BoxAPIError) -> int:
    return error.response_info.status_code


def _conflict(error: BoxAPIError) -> dict[str, Any] | None:
    """The item Box names in a 409 `item_name_in_use`: a list of items for a folder, one item for a file."""
    if _status(error) != 409 or error.response_info.code != "item_name_in_use":
        return None
    conflicts = (error.response_info.context_info or {}).get("conflicts")
    if isinstance(conflicts, list):
        conflicts = conflicts[0] if conflicts else None
    return conflicts if isinstance(conflicts, dict) and conflicts.get("id") else None


def _conflicting_file(error: BoxAPIError, name: str) -> str | None:
    """The id of the file a 409 says holds `name` already: its new version is what a retry uploads."""
    conflict = _conflict(error)
    if conflict is None:
        return None
    if conflict.get("type") != "file":
        raise DeliveryError(
            f"a Box {conflict.get('type', 'item')} named {name!r} is where the image should go",
            permanent=True,
            http_status=409,
        )
    return str(conflict["id"])


def _retry_after(error: BoxAPIError) -> float | None:
    headers = {str(name).lower(): value for name, value in (error.response_info.headers or {}).items()}
    value = headers.get("retry-after")
    return parse_retry_after(value) if isinstance(value, str) else None


def _sha1_of(opener: Callable[[], IO[bytes]]) -> Any:
    digest = hashlib.sha1(usedforsecurity=False)
    with opener() as stream:
        while block := stream.read(1024 * 1024):
            digest.update(block)
    return digest


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks, remaining = [], size
    while remaining > 0:
        block = stream.read(remaining)
        if not block:
            break
        chunks.append(block)
        remaining -= len(block)
    return b"".join(chunks)


def _base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
