"""Google Drive destination (docs/destinations.md "Google Drive"): Drive v3 through google-api-python-client.

- The client is built from the Drive v3 discovery document the library ships (no network), with its `rootUrl`
  replaced by the `api_base` setting, so both the metadata calls and the uploads (`<root>upload/drive/v3/…`) go
  where the operator (or a test) points them.
- Its HTTP goes through the outbound gate: googleapiclient takes an httplib2-style `http` object, so `_GateHttp`
  gives it one that sends each request on `apertur.http.provider_session()` (the attempt's deadline applies), and
  google-auth's `AuthorizedHttp` adds the bearer token. google-auth never refreshes by itself here: the token is
  refreshed by the OAuth base under the destination's lock (destinations/backends/oauth.py).
- Up to `APERTUR_GOOGLE_DRIVE_RESUMABLE_THRESHOLD_BYTES` an image is one multipart upload; above, a resumable
  upload in chunks of `APERTUR_GOOGLE_DRIVE_CHUNK_SIZE_BYTES`, resumed within the attempt when a chunk's
  connection drops.
- Drive allows many files of one name in a folder, so "overwrite" is: find the name in the folder and update
  that file, else create it. Folders of the rendered path are found or created once and their ids cached; a
  cached folder deleted behind our back is found missing (404), or moved to the trash is found by the image
  landing trashed, and is then created again.
"""

import json
import uuid
from collections.abc import Callable
from typing import IO, Any, ClassVar

import google.oauth2.credentials
import httplib2
import requests
from django.conf import settings
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery, discovery_cache
from googleapiclient.errors import HttpError, ResumableUploadError
from googleapiclient.http import MediaIoBaseUpload
from pydantic import field_validator

from apertur.http import provider_session
from destinations.backends.base import DeliveryError, DeliveryReceipt, StagedImage, parse_retry_after
from destinations.backends.folder_cache import FolderIdCache
from destinations.backends.oauth import AccessTokenRejected, OAuthBackend, OAuthConfig, OAuthEndpoints
from destinations.paths import DEFAULT_PATH_TEMPLATE, PathTemplateError, image_path, validate_template

FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
# The Drive reasons that mean "slow down" (https://developers.google.com/drive/api/guides/limits): 403 or 429.
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
# A chunk whose connection drops is resumed from what Drive acknowledged, this many times per attempt.
CHUNK_RESUMES_PER_ATTEMPT = 3
FOLDER_CACHE_SIZE = 10_000


class GoogleDriveConfig(OAuthConfig):
    folderId: str = "root"  # Drive's alias for the root of My Drive
    pathTemplate: str = DEFAULT_PATH_TEMPLATE

    @field_validator("folderId")
    @classmethod
    def folder_id_is_given(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("must be a Drive folder id (the last part of the folder's URL), or 'root'")
        return value

    @field_validator("pathTemplate")
    @classmethod
    def template_is_known(cls, value: str) -> str:
        try:
            return validate_template(value)
        except PathTemplateError as error:
            raise ValueError(str(error)) from error


FOLDER_IDS = FolderIdCache(FOLDER_CACHE_SIZE)


class _GateHttp:
    """The part of httplib2.Http that googleapiclient and google-auth-httplib2 call, sent through the outbound gate
    (a requests session from apertur/http.py) instead of httplib2's own sockets."""

    def __init__(self, session: requests.Session, timeout: Callable[[], float]) -> None:
        self.session = session
        self.timeout_for_request = timeout
        self.timeout = None  # read by AuthorizedHttp's `timeout` property; each request has its own

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: bytes | str | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
        redirections: int = 0,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        if body is not None and hasattr(body, "read"):
            body = body.read()  # one upload chunk at most (googleapiclient's _StreamSlice)
        response = self.session.request(
            method,
            uri,
            data=body,
            headers=headers,
            timeout=self.timeout_for_request(),
            allow_redirects=False,
        )
        info = {name.lower(): value for name, value in response.headers.items()}
        info["status"] = str(response.status_code)
        return httplib2.Response(info), response.content


class GoogleDriveBackend(OAuthBackend):
    type = "google_drive"
    provider = "google_drive"
    Config = GoogleDriveConfig
    config: GoogleDriveConfig
    endpoints = OAuthEndpoints(
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",  # noqa: S106 (a URL, not a password)
        revoke_url="https://oauth2.googleapis.com/revoke",
        # Drive's discovery `rootUrl`: the API lives at <root>drive/v3/ and uploads at <root>upload/drive/v3/.
        api_base="https://www.googleapis.com/",
    )
    # drive.file: only the files and folders Apertur creates (a non-sensitive scope, no Google review).
    scopes = ("https://www.googleapis.com/auth/drive.file",)
    # Google issues a refresh token only for offline access, and again on a reconnect only with prompt=consent.
    authorize_params: ClassVar[dict[str, str]] = {"access_type": "offline", "prompt": "consent"}
    supports_pkce: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Without a destination (a script, a test) the folder cache is this instance's alone.
        self._cache_scope = self.context.destination_id or f"instance-{uuid.uuid4()}"

    def remote_path(self, image: StagedImage) -> str:
        return image_path(self.config.pathTemplate, image)

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        *folders, name = path.split("/")

        def upload(access_token: str) -> str:
            with provider_session() as session:
                return self._upload(self._drive(access_token, session), image, folders, name)

        try:
            file_id = self.with_access_token(upload)
        except HttpError as error:
            raise _delivery_error(error) from error
        except (requests.RequestException, OSError) as error:
            raise DeliveryError(f"could not reach Google Drive: {type(error).__name__}") from error
        return DeliveryReceipt(remote_reference=f"google_drive:{file_id} ({path})")

    def _drive(self, access_token: str, session: requests.Session) -> Any:
        """A Drive v3 client sending with `access_token` on `session` (from the outbound gate)."""
        credentials = google.oauth2.credentials.Credentials(
            token=access_token, token_uri=self.endpoint("token_url"), scopes=list(self.scopes)
        )
        gate = _GateHttp(session, lambda: self.context.deadline.timeout(settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS))
        document = json.loads(discovery_cache.get_static_doc("drive", "v3"))
        document["rootUrl"] = self.endpoint("api_base")
        # max_refresh_attempts=0: a 401 comes back to us, and the OAuth base refreshes under the lock.
        return discovery.build_from_document(document, http=AuthorizedHttp(credentials, gate, max_refresh_attempts=0))

    def _upload(self, drive: Any, image: StagedImage, folders: list[str], name: str) -> str:
        try:
            uploaded = self._upload_unless_a_folder_is_gone(drive, image, folders, name)
            if uploaded is None:
                FOLDER_IDS.forget(self._cache_scope)  # look every folder up again (and create it)
                uploaded = self._upload_into_folders(drive, image, folders, name)
        except HttpError as error:
            if error.resp.status == 401:
                raise AccessTokenRejected() from error
            raise
        return uploaded["id"]

    def _upload_unless_a_folder_is_gone(
        self, drive: Any, image: StagedImage, folders: list[str], name: str
    ) -> dict[str, Any] | None:
        """The uploaded file, or None when a cached folder was deleted behind our back (404) or moved to the trash
        (Drive marks what lies in a trashed folder as trashed)."""
        try:
            uploaded = self._upload_into_folders(drive, image, folders, name)
        except HttpError as error:
            if error.resp.status == 404:
                return None
            raise
        return None if uploaded.get("trashed") else uploaded

    def _upload_into_folders(self, drive: Any, image: StagedImage, folders: list[str], name: str) -> dict[str, Any]:
        parent = self.config.folderId
        for folder in folders:
            parent = self._folder_id(drive, parent, folder)
        existing = _children(drive, parent, name, folder=False)
        with image.open() as stream:
            resumable = image.size_bytes > settings.APERTUR_GOOGLE_DRIVE_RESUMABLE_THRESHOLD_BYTES
            media = MediaIoBaseUpload(
                stream,
                mimetype=image.mime_type,
                chunksize=settings.APERTUR_GOOGLE_DRIVE_CHUNK_SIZE_BYTES,
                resumable=resumable,
            )
            if existing:
                request = drive.files().update(fileId=existing[0]["id"], media_body=media, fields="id,trashed")
            else:
                metadata = {"name": name, "parents": [parent], "mimeType": image.mime_type}
                request = drive.files().create(body=metadata, media_body=media, fields="id,trashed")
            return _send_in_chunks(request) if resumable else request.execute()

    def _folder_id(self, drive: Any, parent: str, name: str) -> str:
        key = (self._cache_scope, parent, name)
        folder_id = FOLDER_IDS.get(key)
        if folder_id is None:
            found = _children(drive, parent, name, folder=True)
            folder_id = found[0]["id"] if found else _create_folder(drive, parent, name)
            FOLDER_IDS.put(key, folder_id)
        return folder_id


def _children(drive: Any, parent: str, name: str, *, folder: bool) -> list[dict[str, str]]:
    """The files (or folders) named `name` in `parent`, oldest first."""
    kind = "=" if folder else "!="
    query = f"name = {_quoted(name)} and {_quoted(parent)} in parents and trashed = false"
    query += f" and mimeType {kind} '{FOLDER_MIME_TYPE}'"
    listing = drive.files().list(q=query, fields="files(id,createdTime)", orderBy="createdTime", pageSize=100)
    files = listing.execute().get("files", [])
    return sorted(files, key=lambda file: (file.get("createdTime", ""), file["id"]))


def _create_folder(drive: Any, parent: str, name: str) -> str:
    """Create the folder; if another worker created one of the same name meanwhile, keep the oldest (every worker
    picks the same one) and remove ours, so a session's images never spread over twin folders."""
    metadata = {"name": name, "parents": [parent], "mimeType": FOLDER_MIME_TYPE}
    created = drive.files().create(body=metadata, fields="id").execute()["id"]
    # Drive's listing may not show a folder made a moment ago: then ours is the one there is.
    twins = _children(drive, parent, name, folder=True)
    oldest = twins[0]["id"] if twins else created
    if oldest != created:
        drive.files().delete(fileId=created).execute()
    return oldest


def _send_in_chunks(request: Any) -> dict[str, Any]:
    """Drive's resumable protocol: chunk after chunk; a chunk cut off by a dropped connection is resumed from the
    byte Drive confirms (googleapiclient asks for it when the previous chunk failed)."""
    resumes = 0
    body = None
    while body is None:
        try:
            _, body = request.next_chunk()
        except (requests.ConnectionError, ConnectionError):
            if request.resumable_uri is None or resumes >= CHUNK_RESUMES_PER_ATTEMPT:
                raise
            resumes += 1
    return body


def _quoted(value: str) -> str:
    # Drive query strings: https://developers.google.com/drive/api/guides/search-files
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _delivery_error(error: HttpError) -> DeliveryError:
    status = error.resp.status
    reasons, message = _error_details(error)
    if isinstance(error, ResumableUploadError) and status == 200:
        return DeliveryError("Google Drive did not start the resumable upload (no session URI)")
    if status == 429 or (status == 403 and reasons & RATE_LIMIT_REASONS):
        return DeliveryError(
            f"Google Drive rate limit ({', '.join(sorted(reasons)) or 'HTTP 429'}); retrying later",
            http_status=status,
            retry_after=parse_retry_after(error.resp.get("retry-after")),
        )
    if status == 404:
        return DeliveryError(
            f"Google Drive folder not found: {message or 'notFound'} (check folderId; Apertur sees only the "
            "folders it created or was given)",
            http_status=status,
        )
    if status == 400:
        return DeliveryError(f"Google Drive refused the request: {message}", permanent=True, http_status=status)
    return DeliveryError(f"HTTP {status} from Google Drive: {message or error.resp.reason}", http_status=status)


def _error_details(error: HttpError) -> tuple[frozenset[str], str]:
    """The reasons and message of Drive's error body: {"error": {"message", "errors": [{"reason"}]}}."""
    try:
        body = json.loads(error.content)["error"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return frozenset(), ""
    if not isinstance(body, dict):
        return frozenset(), ""
    details = body.get("errors") if isinstance(body.get("errors"), list) else []
    reasons = frozenset(str(item.get("reason")) for item in details if isinstance(item, dict) and item.get("reason"))
    return reasons, str(body.get("message") or "")[:300]
