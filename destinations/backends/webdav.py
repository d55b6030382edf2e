"""WebDAV destination (Nextcloud, ownCloud, Apache mod_dav, nginx, any RFC 4918 server): docs/destinations.md "Types".

Plain `requests` through the outbound gate (`apertur/http.py` `attempt_session()`), not webdavclient3: that library
builds its own session, follows redirects, takes one timeout when it is built and checks each parent with an extra
HEAD; here every request passes the gate, follows nothing and is bounded by the attempt's deadline. A delivery
reuses its worker thread's kept connections, so the session is shared with other destinations: the credentials go
with each request, never onto the session.

One attempt: make the missing folders (MKCOL), then one PUT of the staged stream to the final path. No temporary
name and MOVE: docs/destinations.md "Types" says why.
"""

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from django.conf import settings
from pydantic import SecretStr, field_validator
from requests.utils import requote_uri

from apertur.http import HostNotAllowed, attempt_session, is_host_name_or_address
from destinations.backends.base import (
    BackendConfig,
    DeliveryError,
    DeliveryReceipt,
    DestinationBackend,
    StagedImage,
)
from destinations.paths import DEFAULT_PATH_TEMPLATE, image_path, normalise_path

BLOCK_SIZE = 64 * 1024
# Enough of an error body for the server's own explanation, never a page a server decides to send.
ERROR_BODY_LIMIT = 4096
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# SabreDAV (Nextcloud, ownCloud) explains an error in <s:message> of its XML error body.
_SABRE_MESSAGE = re.compile(rb"<s:message>(.*?)</s:message>", re.DOTALL)
CREDENTIALS_REFUSED = frozenset({401, 403})
# Worth retrying though 4xx: the server is busy, a lock is held, or the user can free space (507 is 5xx anyway).
RETRYABLE_CLIENT_ERRORS = frozenset({408, 423, 425, 429})
# MKCOL on a folder that exists: 405 (RFC 4918 §9.3.1); on a folder whose parent is missing: 409.
FOLDER_EXISTS = 405
PARENT_MISSING = 409


class WebdavConfig(BackendConfig):
    url: str
    username: str
    password: SecretStr
    remotePath: str = ""

    @field_validator("url")
    @classmethod
    def url_is_a_folder_url(cls, value: str) -> str:
        if _CONTROL_CHARACTERS.search(value) or " " in value:
            raise ValueError("must not contain spaces or control characters (percent-encode them: %20)")
        parts = urlsplit(value)
        if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if not is_host_name_or_address(parts.hostname):
            raise ValueError(f"{parts.hostname} is not a valid host name")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials: use the username and password fields")
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            raise ValueError("must not have a query or fragment (percent-encode '?' as %3F and '#' as %23)")
        try:
            parts.port  # noqa: B018 (raises for a port out of range)
        except ValueError as error:
            raise ValueError(f"has an invalid port: {error}") from None
        return value

    @field_validator("username")
    @classmethod
    def username_fits_basic_auth(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        # Basic authentication sends "username:password" (RFC 7617): a colon would move into the password.
        if ":" in value or _CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain ':' or control characters")
        return value

    @field_validator("remotePath")
    @classmethod
    def no_control_characters(cls, value: str) -> str:
        if _CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain control characters")
        return value


class _SizedStream:
    """The staged stream with its known length. requests then sends a Content-Length and urllib3 reads the stream
    block by block; a stream requests cannot measure (a staging bucket's file) would go with chunked encoding
    instead, which servers may refuse for PUT (411 Length Required)."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream, self.size = stream, size

    def __len__(self) -> int:
        return self.size

    def read(self, size: int | None = BLOCK_SIZE) -> bytes:
        return self.stream.read(BLOCK_SIZE if size is None or size < 0 else size)

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK_SIZE):
            yield block


@dataclass(frozen=True)
class _Answer:
    """What the backend keeps of a response: its status, where a redirect points, the start of an error body."""

    status: int
    location: str
    body: bytes

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


class WebdavBackend(DestinationBackend):
    type = "webdav"
    Config = WebdavConfig
    config: WebdavConfig

    def remote_path(self, image: StagedImage) -> str:
        return normalise_path(f"{self.config.remotePath}/{image_path(DEFAULT_PATH_TEMPLATE, image)}")

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        segments = path.split("/")
        target = self.url_of(segments)
        try:
            with attempt_session(kept=self.context.keep_connections) as session:
                self._make_folders(session, segments[:-1])
                with image.open() as stream:
                    body = _SizedStream(stream, image.size_bytes)
                    answer = self._request(session, "PUT", target, data=body, headers={"Content-Type": image.mime_type})
        except HostNotAllowed as error:
            raise DeliveryError(f"refused host: {error}", permanent=True) from error
        if not answer.succeeded:
            raise _refusal("PUT", target, answer)
        return DeliveryReceipt(remote_reference=target, http_status=answer.status)

    def url_of(self, segments: list[str]) -> str:
        """The URL of a path below the destination's `url`: every segment percent-encoded, '/' included."""
        base = requote_uri(self.config.url).rstrip("/")
        return "/".join([base, *(quote(segment, safe="") for segment in segments)])

    def _basic_authorization(self) -> str:
        # requests encodes Basic credentials as Latin-1; servers (Nextcloud, wsgidav, Apache) read UTF-8, the
        # charset RFC 7617 names, so every password works and none fails to encode.
        pair = f"{self.config.username}:{self.config.secret_value('password')}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _make_folders(self, session: requests.Session, folders: list[str]) -> None:
        """Make the image's folder and its missing parents below `url`.

        MKCOL the deepest folder first: one request when it exists already (every image of a session after the
        first). While the server answers that the parent is missing, go up a level; then make the levels below.
        """
        if not folders:
            return
        for depth in range(len(folders), 0, -1):
            if not self._mkcol(session, folders[:depth], parent_may_be_missing=True):
                break
        else:
            raise DeliveryError(
                f"the folder {self.config.url} does not exist on the WebDAV server (MKCOL of a folder in it "
                f"answered {PARENT_MISSING}); check the destination's url",
                permanent=True,
                http_status=PARENT_MISSING,
            )
        for below in range(depth + 1, len(folders) + 1):
            self._mkcol(session, folders[:below], parent_may_be_missing=False)

    def _mkcol(self, session: requests.Session, segments: list[str], *, parent_may_be_missing: bool) -> bool:
        """Make one folder; True when its parent is missing (and that is allowed), False when it exists now."""
        url = self.url_of(segments) + "/"
        answer = self._request(session, "MKCOL", url)
        # 405: the folder exists (or was just made by an attempt for another image of the session).
        if answer.succeeded or answer.status == FOLDER_EXISTS:
            return False
        if answer.status == PARENT_MISSING and parent_may_be_missing:
            return True
        raise _refusal("MKCOL", url, answer)

    def _request(
        self, session: requests.Session, method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> _Answer:
        """One request, with the destination's credentials: no redirect followed, each wait bounded by the outbound
        timeout and by the attempt's deadline (which shuts the socket when it passes). Only the status and the
        start of the body are read; a short body read to its end leaves the connection to the next request (of
        this attempt, or of a later one in this thread), a longer one closes it."""
        timeout = settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS
        wait = self.context.deadline.timeout(timeout)
        try:
            response = session.request(
                method,
                url,
                headers={"Authorization": self._basic_authorization(), **(headers or {})},
                timeout=wait,
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            try:
                body = response.raw.read(ERROR_BODY_LIMIT, decode_content=True)
            except (requests.RequestException, OSError, ValueError, urllib3.exceptions.HTTPError):
                body = b""  # the status is what counts
            finally:
                response.close()
        except requests.Timeout as error:
            if wait < timeout:  # the wait was what remained of the attempt
                raise DeliveryError(f"the attempt's deadline passed during {method}") from error
            raise DeliveryError(f"the WebDAV server did not answer {method} within {timeout:g} s") from error
        except requests.RequestException as error:
            # (A refused host is HostNotAllowed, raised through urllib3 and requests unwrapped: deliver() takes it.)
            raise DeliveryError(
                f"WebDAV server unreachable or connection lost during {method}: {_reason(error)}"
            ) from error
        return _Answer(response.status_code, response.headers.get("Location", ""), body)


def _refusal(method: str, url: str, answer: _Answer) -> DeliveryError:
    """What an answer other than success means for the delivery (docs/destinations.md "Types")."""
    status = answer.status
    explained = _server_message(answer.body)
    said = f"HTTP {status} from the WebDAV server for {method} {url}" + (f": {explained}" if explained else "")
    if 300 <= status < 400:
        pointed = f"; it points to {answer.location[:300]}" if answer.location else ""
        return DeliveryError(
            f"{said} (redirects are not followed{pointed}: set url to the final address)", http_status=status
        )
    if status in CREDENTIALS_REFUSED:
        return DeliveryError(f"{said} (credentials or permissions refused)", needs_reconnect=True, http_status=status)
    if status == PARENT_MISSING:
        return DeliveryError(f"{said} (a folder on its way is missing or a file)", permanent=True, http_status=status)
    permanent = 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS
    return DeliveryError(said, permanent=permanent, http_status=status)


def _server_message(body: bytes) -> str:
    match = _SABRE_MESSAGE.search(body)
    if match is None:
        return ""
    return " ".join(match.group(1).decode("utf-8", "replace").split())[:300]


def _reason(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return str(error) or type(error).__name__
