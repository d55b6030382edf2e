"""The Microsoft Graph drive calls of the onedrive destination (destinations/backends/onedrive.py), as documented at
https://learn.microsoft.com/graph/api/resources/driveitem: folders, simple upload and upload sessions, and Graph's
error answers as DeliveryError."""

import contextlib
from typing import IO, Any
from urllib.parse import quote

import requests

from apertur.deadlines import Deadline
from destinations.backends.base import DeliveryError, parse_retry_after
from destinations.backends.oauth import AccessTokenRejected

GRAPH_TIMEOUT_SECONDS = 30
# Graph's answers worth retrying although 4xx: throttled (429), a lock or conflict of the moment (409, 423).
RETRYABLE_CLIENT_ERRORS = frozenset({408, 409, 423, 429})


class FolderGone(Exception):
    """Graph answered 404 for a folder we had an id for: it was deleted or moved behind our back."""


class Graph:
    """The Graph calls of one attempt, on one drive, with the attempt's session and access token."""

    def __init__(self, session: requests.Session, drive_url: str, deadline: Deadline) -> None:
        self.session = session
        self.drive_url = drive_url
        self.deadline = deadline
        self.access_token = ""
        self.status: int | None = None

    def _item_url(self, item_id: str) -> str:
        return f"{self.drive_url}/root" if item_id == "root" else f"{self.drive_url}/items/{quote(item_id, safe='')}"

    def _child_url(self, parent_id: str, name: str) -> str:
        return f"{self._item_url(parent_id)}:/{quote(name, safe='')}:"

    def call(self, method: str, url: str, *, authorised: bool = True, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if authorised:
            headers["Authorization"] = f"Bearer {self.access_token}"
        response = self.session.request(
            method,
            url,
            headers=headers,
            timeout=self.deadline.timeout(GRAPH_TIMEOUT_SECONDS),
            allow_redirects=False,
            **kwargs,
        )
        self.status = response.status_code
        if authorised and response.status_code == 401:
            raise AccessTokenRejected()
        return response

    def _missing(self, parent_id: str, response: requests.Response, doing: str) -> Exception:
        """A 404 about `parent_id`: a folder we cached is gone, or (for the root) the drive itself is unknown."""
        if parent_id == "root":
            return graph_error(response, f"{doing} (is driveId right?)")
        return FolderGone()

    def folder(self, parent_id: str, name: str) -> str:
        doing = f"making the folder {name!r}"
        response = self.call(
            "POST",
            f"{self._item_url(parent_id)}/children",
            json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"},
        )
        if response.status_code == 409:  # it exists (or another worker just made it): look it up
            response = self.call("GET", self._child_url(parent_id, name).rstrip(":"))
            if response.ok and "folder" not in _json(response):
                raise DeliveryError(f"OneDrive has a file named {name!r} where a folder should be", permanent=True)
        if response.status_code == 404:
            raise self._missing(parent_id, response, doing)
        if not response.ok:
            raise graph_error(response, doing)
        folder_id = _json(response).get("id")
        if not isinstance(folder_id, str) or not folder_id:
            raise DeliveryError(f"OneDrive answered without an id while {doing}")
        return folder_id

    def simple_upload(self, folder_id: str, name: str, stream: IO[bytes], size: int, mime_type: str) -> dict:
        response = self.call(
            "PUT",
            f"{self._child_url(folder_id, name)}/content",
            params={"@microsoft.graph.conflictBehavior": "replace"},
            data=stream,
            headers={"Content-Type": mime_type, "Content-Length": str(size)},
        )
        if response.status_code == 404:
            raise self._missing(folder_id, response, "uploading")
        if not response.ok:
            raise graph_error(response, "uploading")
        return _json(response)

    def create_upload_session(self, folder_id: str, name: str) -> str:
        response = self.call(
            "POST",
            f"{self._child_url(folder_id, name)}/createUploadSession",
            json={"item": {"@microsoft.graph.conflictBehavior": "replace"}},
        )
        if response.status_code == 404:
            raise self._missing(folder_id, response, "creating an upload session")
        if not response.ok:
            raise graph_error(response, "creating an upload session")
        upload_url = _json(response).get("uploadUrl")
        if not upload_url:
            raise DeliveryError("OneDrive created an upload session without an upload URL")
        return upload_url

    def put_chunk(self, upload_url: str, chunk: bytes, offset: int, total: int) -> dict[str, Any]:
        # The upload URL carries its own authorisation; Graph may answer 401 to one that also has a bearer token.
        response = self.call(
            "PUT",
            upload_url,
            authorised=False,
            data=chunk,
            headers={
                "Content-Length": str(len(chunk)),
                "Content-Range": f"bytes {offset}-{offset + len(chunk) - 1}/{total}",
            },
        )
        if response.status_code == 416:  # the fragment was received already (a resume after a lost answer)
            return {"nextExpectedRanges": [f"{self.next_expected_offset(upload_url)}-"]}
        if response.status_code in (401, 404):
            # The session expired or was dropped (its URL's own authorisation with it); the next attempt makes one.
            error = graph_error(response, "uploading a chunk")
            error.permanent = False
            raise error
        if response.status_code not in (200, 201, 202):
            raise graph_error(response, "uploading a chunk")
        return _json(response)

    def next_expected_offset(self, upload_url: str) -> int:
        response = self.call("GET", upload_url, authorised=False)
        if not response.ok:
            raise graph_error(response, "resuming the upload session")
        return first_missing_offset(_json(response))

    def cancel_upload_session(self, upload_url: str) -> None:
        with contextlib.suppress(requests.RequestException):  # it expires on its own
            self.session.delete(upload_url, timeout=self.deadline.timeout(5), allow_redirects=False)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def graph_error(response: requests.Response, doing: str) -> DeliveryError:
    """Graph's error answer as one failed attempt. Its `error.code` is quoted, its message not (it may name the
    user's files). https://learn.microsoft.com/graph/errors"""
    status = response.status_code
    error = _json(response).get("error")
    code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), str) else ""
    message = f"OneDrive answered HTTP {status}{f' ({code[:100]})' if code else ''} while {doing}"
    if status == 403:
        # accessDenied: the grant no longer covers this drive (consent withdrawn, drive unshared).
        return DeliveryError(message, needs_reconnect=True, http_status=status)
    # 429/503 (and 509 on SharePoint) carry Retry-After: https://learn.microsoft.com/graph/throttling
    retryable = status >= 500 or status in RETRYABLE_CLIENT_ERRORS
    failure = DeliveryError(message, permanent=not retryable, http_status=status, retry_after=_retry_after(response))
    if failure.retry_after is not None:  # the wait as bounded, not as asked
        failure.message += f"; retry after {failure.retry_after:g} s"
        failure.args = (failure.message,)
    return failure


def _retry_after(response: requests.Response) -> float | None:
    """Graph's Retry-After (it sends whole seconds; a date is read too). DeliveryError caps it at an hour."""
    return parse_retry_after(response.headers.get("Retry-After"))


def first_missing_offset(answer: dict[str, Any]) -> int:
    """The start of Graph's first `nextExpectedRanges` entry ("26-" or "26-49")."""
    ranges = answer.get("nextExpectedRanges") or []
    try:
        return int(str(ranges[0]).split("-", 1)[0])
    except (IndexError, ValueError) as error:
        raise DeliveryError("OneDrive's upload session answered without a next expected range") from error
