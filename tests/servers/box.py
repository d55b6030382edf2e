"""A local Box: the OAuth 2.0 endpoints and the Content API endpoints the box backend calls, as Box documents them
(developer.box.com/reference), so the real boxsdk (its `box_sdk_gen` client) runs against it unmodified.

One server stands for all three Box hosts; settings point the backend at it:
- `account.box.com/api/oauth2/authorize` → `GET /api/oauth2/authorize` (answers with a redirect carrying a code and
  the state; Box has no PKCE);
- `api.box.com` → `POST /oauth2/token` (authorization_code and refresh_token grants; Box rotates the refresh token
  on every refresh, the old one is then refused with `invalid_grant`), `POST /oauth2/revoke` (either token ends the
  grant), `POST /2.0/folders`, `GET /2.0/folders/{id}`, `OPTIONS /2.0/files/content` (the preflight check);
- `upload.box.com/api` → `POST /api/2.0/files/content` (multipart: `attributes` before `file`),
  `POST /api/2.0/files/{id}/content` (a new version), and chunked uploads: `POST /api/2.0/files/upload_sessions`,
  `POST /api/2.0/files/{id}/upload_sessions`, `PUT /api/2.0/files/upload_sessions/{id}` (Content-Range, Digest
  `sha=<base64 SHA-1>`), `POST /api/2.0/files/upload_sessions/{id}/commit` (parts list, whole-file Digest).

Errors have Box's shape: `{"type": "error", "status", "code", "message", "context_info", "request_id"}`; a name
already in a folder is 409 `item_name_in_use` with the conflicting item in `context_info.conflicts` (a list for
folders, an object for files, as Box answers). An unknown or expired access token is 401 with an empty body and a
`WWW-Authenticate` header. Box refuses upload sessions for files under 20,000,000 bytes (`file_size_too_small`);
`min_session_file_size` lowers that so tests exercise the chunked path with small images.

Failures are injected with `fail_next` (a status with Box's error body and optional Retry-After, or a connection
dropped half-way through the request body).
"""

import base64
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.servers.oauth_provider import TokenIssuer

ROOT_ID = "0"
BOX_MIN_SESSION_FILE_SIZE = 20_000_000
PART_SIZE = 8 * 1024 * 1024  # what Box answers for files up to a few hundred MB


@dataclass
class Item:
    id: str
    type: str  # "file" or "folder"
    name: str
    parent_id: str | None
    content: bytes = b""
    versions: int = 1

    def mini(self) -> dict:
        return {"type": self.type, "id": self.id, "name": self.name, "etag": str(self.versions - 1)}


@dataclass
class UploadSession:
    id: str
    file_size: int
    file_name: str
    folder_id: str | None
    file_id: str | None  # a new version of this file
    parts: dict[int, bytes] = field(default_factory=dict)  # offset → bytes


@dataclass
class Failure:
    pattern: re.Pattern[str]  # matched against "METHOD /path"
    status: int = 500
    code: str = "internal_server_error"
    retry_after: int | str | None = None  # seconds, or an HTTP date
    drop: bool = False  # read half the body, then close the connection without an answer
    times: int = 1


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


class BoxError(Exception):
    def __init__(self, status: int, code: str, message: str, context_info: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.context_info = status, code, message, context_info


class BoxServer(TokenIssuer):
    def __init__(self) -> None:
        super().__init__(rotate_refresh_tokens=True, expires_in=3600)
        self.items: dict[str, Item] = {ROOT_ID: Item(ROOT_ID, "folder", "All Files", None)}
        self.sessions: dict[str, UploadSession] = {}
        self.failures: list[Failure] = []
        self.requests: list[Request] = []
        self.min_session_file_size = BOX_MIN_SESSION_FILE_SIZE
        self.part_size = PART_SIZE
        self.commit_pending = 0  # answer this many commits with 202 + Retry-After (parts still processing)
        self.revoked: list[str] = []
        self.token_forms: list[dict[str, str]] = []  # every token request's form, client secret included
        self.deny_next = False
        self.failing_tokens: set[str] = set()  # Content API calls with these access tokens get a 500
        self._ids = itertools.count(1000)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.handle_request("GET")

            def do_POST(self) -> None:
                self.handle_request("POST")

            def do_PUT(self) -> None:
                self.handle_request("PUT")

            def do_DELETE(self) -> None:
                self.handle_request("DELETE")

            def do_OPTIONS(self) -> None:
                self.handle_request("OPTIONS")

            def handle_request(self, method: str) -> None:
                url = urlsplit(self.path)
                server.requests.append(Request(method, url.path, {k.lower(): v for k, v in self.headers.items()}))
                failure = server.take_failure(f"{method} {url.path}")
                if failure is not None and failure.drop:
                    self.read_body(limit=max(1, int(self.headers.get("Content-Length") or 2) // 2))
                    self.close_connection = True
                    self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the connection break
                    return
                body = self.read_body()
                if failure is not None:
                    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                    return self.error(BoxError(failure.status, failure.code, "injected failure"), headers)
                try:
                    status, payload, headers = server.route(method, url.path, parse_qs(url.query), self.headers, body)
                except BoxError as error:
                    return self.error(error, {})
                self.answer(status, payload, headers)

            def read_body(self, limit: int | None = None) -> bytes:
                if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                        if limit is not None and len(data) >= limit:
                            return data
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length if limit is None else min(length, limit))

            def error(self, error: BoxError, headers: dict[str, str]) -> None:
                if error.status == 401:
                    return self.answer(401, None, {**headers, "WWW-Authenticate": _invalid_token_challenge()})
                payload = {
                    "type": "error",
                    "status": error.status,
                    "code": error.code,
                    "message": error.message,
                    "request_id": secrets.token_hex(6),
                }
                if error.context_info is not None:
                    payload["context_info"] = error.context_info
                self.answer(error.status, payload, headers)

            def answer(self, status: int, payload: object, headers: dict[str, str]) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Location" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # --- what tests use -------------------------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        """APERTUR_OAUTH["box"] pointing the backend and the connect flow here."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authorize_url": f"{self.url}/api/oauth2/authorize",
            "token_url": f"{self.url}/oauth2/token",
            "revoke_url": f"{self.url}/oauth2/revoke",
            "api_base": self.url,
            "upload_base": f"{self.url}/api",
        }

    def fail_next(self, pattern: str, status: int = 500, *, times: int = 1, **options) -> None:
        """The next `times` requests whose "METHOD /path" matches `pattern` fail as described."""
        code = options.pop("code", None) or {429: "rate_limit_exceeded"}.get(status, "internal_server_error")
        with self.lock:
            self.failures.append(Failure(re.compile(pattern), status, code, times=times, **options))

    def take_failure(self, request_line: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.pattern.search(request_line):
                    failure.times -= 1
                    if failure.times <= 0:
                        self.failures.remove(failure)
                    return failure
        return None

    def reset(self) -> None:
        with self.lock:
            self.items = {ROOT_ID: Item(ROOT_ID, "folder", "All Files", None)}
            self.sessions.clear()
            self.failures.clear()
            self.requests.clear()
            self.codes.clear()
            self.grants.clear()
            self.revoked.clear()
            self.token_forms.clear()
            self.deny_next = False
            self.failing_tokens.clear()
            self.part_size = PART_SIZE
            self.min_session_file_size = BOX_MIN_SESSION_FILE_SIZE
            self.commit_pending = 0
            self.refreshes = 0

    def files(self) -> dict[str, bytes]:
        """Every file by its path below the root ("folder/sub/name") → its current content."""
        with self.lock:
            return {self._path(item): item.content for item in self.items.values() if item.type == "file"}

    def file(self, path: str) -> Item:
        with self.lock:
            return next(item for item in self.items.values() if item.type == "file" and self._path(item) == path)

    def folder_id(self, path: str) -> str | None:
        with self.lock:
            return next(
                (item.id for item in self.items.values() if item.type == "folder" and self._path(item) == path), None
            )

    def delete(self, item_id: str) -> None:
        """Delete an item and everything below it, as a user would behind the backend's back."""
        with self.lock:
            doomed = {item_id}
            while True:
                below = {i.id for i in self.items.values() if i.parent_id in doomed and i.id not in doomed}
                if not below:
                    break
                doomed |= below
            for key in doomed:
                self.items.pop(key, None)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the endpoints --------------------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict, headers, body: bytes) -> tuple[int, object, dict[str, str]]:
        if method == "GET" and path in ("/api/oauth2/authorize", "/oauth2/authorize"):
            return self.authorize(query)
        if method == "POST" and path == "/oauth2/token":
            self.token_requests_arrived.release()
            self.token_gate.wait(10)
            form = parse_qs(body.decode())
            with self.lock:
                self.token_forms.append({name: values[0] for name, values in form.items()})
            grant = (form.get("grant_type") or [""])[0]
            status, payload = self.exchange_code(form) if grant == "authorization_code" else self.refresh(form)
            if status == 400 and payload.get("error") == "invalid_grant":
                payload["error_description"] = "Invalid refresh token" if grant == "refresh_token" else "Invalid code"
            return status, payload, {}
        if method == "POST" and path == "/oauth2/revoke":
            return self.revoke_token(parse_qs(body.decode()))
        self.authenticate(headers)
        with self.lock:
            return self.content_api(method, path, headers, body)

    def authorize(self, query: dict) -> tuple[int, object, dict[str, str]]:
        def value(name: str) -> str:
            return (query.get(name) or [""])[0]

        if value("response_type") != "code" or value("client_id") != self.client_id or not value("redirect_uri"):
            raise BoxError(400, "invalid_request", "response_type=code, client_id and redirect_uri are required")
        with self.lock:
            denied, self.deny_next = self.deny_next, False
        if denied:  # the user clicked "Deny" on Box's consent page
            answer = {"error": "access_denied", "error_description": "The end user denied the request for access"}
        else:
            answer = {"code": self.issue_code(redirect_uri=value("redirect_uri"))}
        answer |= {"state": value("state")} if value("state") else {}
        separator = "&" if "?" in value("redirect_uri") else "?"
        return 302, None, {"Location": f"{value('redirect_uri')}{separator}{urlencode(answer)}"}

    def revoke_token(self, form: dict) -> tuple[int, object, dict[str, str]]:
        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if (value("client_id"), value("client_secret")) != (self.client_id, self.client_secret):
            return 400, {"error": "invalid_client"}, {}
        self.revoke(value("token"))
        self.revoked.append(value("token"))
        return 200, None, {}

    def authenticate(self, headers) -> None:
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if not self.token_valid(token):
            raise BoxError(401, "unauthorized", "Unauthorized")
        if token in self.failing_tokens:
            raise BoxError(500, "internal_server_error", "Internal Server Error")

    def content_api(self, method: str, path: str, headers, body: bytes) -> tuple[int, object, dict[str, str]]:
        if method == "POST" and path == "/2.0/folders":
            return self.create_folder(json.loads(body))
        if match := re.fullmatch(r"/2\.0/folders/(\w+)", path):
            return 200, self.full(self.item(match[1], "folder")), {}
        if method == "OPTIONS" and path == "/2.0/files/content":
            return self.preflight(json.loads(body or b"{}"))
        if method == "POST" and path == "/api/2.0/files/content":
            return self.upload(headers, body, file_id=None)
        if method == "POST" and (match := re.fullmatch(r"/api/2\.0/files/(\w+)/content", path)):
            return self.upload(headers, body, file_id=match[1])
        if method == "POST" and path == "/api/2.0/files/upload_sessions":
            request = json.loads(body)
            return self.create_session(request, folder_id=str(request.get("folder_id")), file_id=None)
        if method == "POST" and (match := re.fullmatch(r"/api/2\.0/files/(\w+)/upload_sessions", path)):
            return self.create_session(json.loads(body), folder_id=None, file_id=match[1])
        if method == "PUT" and (match := re.fullmatch(r"/api/2\.0/files/upload_sessions/(\w+)", path)):
            return self.upload_part(self.session(match[1]), headers, body)
        if method == "DELETE" and (match := re.fullmatch(r"/api/2\.0/files/upload_sessions/(\w+)", path)):
            del self.sessions[self.session(match[1]).id]  # abort: the parts are dropped
            return 204, None, {}
        if method == "POST" and (match := re.fullmatch(r"/api/2\.0/files/upload_sessions/(\w+)/commit", path)):
            return self.commit(self.session(match[1]), headers, json.loads(body))
        raise BoxError(404, "not_found", f"no such endpoint: {method} {path}")

    def create_folder(self, request: dict) -> tuple[int, object, dict[str, str]]:
        name, parent_id = request.get("name") or "", str((request.get("parent") or {}).get("id", ""))
        self.check_name(name)
        self.item(parent_id, "folder")
        if (existing := self.child(parent_id, name)) is not None:
            raise BoxError(
                409, "item_name_in_use", "Item with the same name already exists", {"conflicts": [existing.mini()]}
            )
        folder = Item(self.new_id(), "folder", name, parent_id)
        self.items[folder.id] = folder
        return 201, self.full(folder), {}

    def preflight(self, request: dict) -> tuple[int, object, dict[str, str]]:
        name, parent_id = request.get("name") or "", str((request.get("parent") or {}).get("id", ""))
        self.check_name(name)
        self.item(parent_id, "folder")
        if (existing := self.child(parent_id, name)) is not None:
            raise BoxError(
                409, "item_name_in_use", "Item with the same name already exists", {"conflicts": existing.mini()}
            )
        return 200, {"upload_url": "https://upload.box.com/api/2.0/files/content", "upload_token": None}, {}

    def upload(self, headers, body: bytes, *, file_id: str | None) -> tuple[int, object, dict[str, str]]:
        parts = _multipart(headers.get("Content-Type") or "", body)
        names = [name for name, _ in parts]
        if names[:2] != ["attributes", "file"]:
            raise BoxError(400, "metadata_after_file_contents", "attributes must come before the file")
        attributes, content = json.loads(parts[0][1]), parts[1][1]
        if (md5 := headers.get("Content-MD5")) and md5.lower() != hashlib.sha1(content).hexdigest():
            raise BoxError(412, "sha1_mismatch", "The SHA1 checksum of the file does not match Content-MD5")
        if file_id is None:
            name, parent_id = attributes.get("name") or "", str((attributes.get("parent") or {}).get("id", ""))
            self.check_name(name)
            self.item(parent_id, "folder")
            if (existing := self.child(parent_id, name)) is not None:
                raise BoxError(
                    409, "item_name_in_use", "Item with the same name already exists", {"conflicts": existing.mini()}
                )
            item = Item(self.new_id(), "file", name, parent_id, content)
            self.items[item.id] = item
        else:
            item = self.item(file_id, "file")
            item.content, item.versions = content, item.versions + 1
            item.name = attributes.get("name") or item.name
        return 201, {"total_count": 1, "entries": [self.full(item)]}, {}

    def create_session(self, request: dict, *, folder_id: str | None, file_id: str | None) -> tuple[int, object, dict]:
        size = request.get("file_size")
        if not isinstance(size, int) or size < 0:
            raise BoxError(400, "bad_request", "file_size is required")
        if size < self.min_session_file_size:
            raise BoxError(400, "file_size_too_small", "File size is less than minimum allowed for this API")
        name = request.get("file_name") or ""
        if file_id is None:
            self.check_name(name)
            self.item(folder_id, "folder")
            if (existing := self.child(folder_id, name)) is not None:
                raise BoxError(
                    409, "item_name_in_use", "Item with the same name already exists", {"conflicts": existing.mini()}
                )
        else:
            existing = self.item(file_id, "file")
            name = name or existing.name
        session = UploadSession(secrets.token_hex(8).upper(), size, name, folder_id, file_id)
        self.sessions[session.id] = session
        base = "https://upload.box.com/api/2.0/files/upload_sessions"
        return (
            201,
            {
                "id": session.id,
                "type": "upload_session",
                "session_expires_at": "2030-01-01T00:00:00Z",
                "part_size": self.part_size,
                "total_parts": max(1, math.ceil(size / self.part_size)),
                "num_parts_processed": 0,
                "session_endpoints": {
                    "upload_part": f"{base}/{session.id}",
                    "commit": f"{base}/{session.id}/commit",
                    "abort": f"{base}/{session.id}",
                    "list_parts": f"{base}/{session.id}/parts",
                    "status": f"{base}/{session.id}",
                    "log_event": f"{base}/{session.id}/log",
                },
            },
            {},
        )

    def upload_part(self, session: UploadSession, headers, body: bytes) -> tuple[int, object, dict[str, str]]:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers.get("Content-Range") or "")
        if match is None:
            raise BoxError(400, "bad_request", "Content-Range is required")
        start, end, total = (int(group) for group in match.groups())
        last = end + 1 == total
        if (
            total != session.file_size
            or start % self.part_size
            or end - start + 1 != len(body)
            or (not last and len(body) != self.part_size)
            or (last and len(body) > self.part_size)
        ):
            raise BoxError(416, "range_not_satisfiable", "The part's range does not fit the session's part size")
        sha1 = hashlib.sha1(body).digest()
        if headers.get("Digest") != f"sha={base64.b64encode(sha1).decode()}":
            raise BoxError(412, "sha1_mismatch", "The Digest header does not match the part")
        session.parts[start] = body
        part = {"part_id": f"{start:08X}", "offset": start, "size": len(body), "sha1": sha1.hex()}
        return 200, {"part": part}, {}

    def commit(self, session: UploadSession, headers, request: dict) -> tuple[int, object, dict[str, str]]:
        listed = sorted((part["offset"], part["size"], part["part_id"]) for part in request.get("parts") or [])
        held = sorted((offset, len(data), f"{offset:08X}") for offset, data in session.parts.items())
        if listed != held:
            raise BoxError(400, "bad_request", "The parts list does not match the parts uploaded")
        content = b"".join(session.parts[offset] for offset in sorted(session.parts))
        if len(content) != session.file_size:
            raise BoxError(400, "bad_request", "The parts do not add up to the file size")
        if headers.get("Digest") != f"sha={base64.b64encode(hashlib.sha1(content).digest()).decode()}":
            raise BoxError(422, "sha1_mismatch", "The Digest header does not match the file")
        if self.commit_pending > 0:
            self.commit_pending -= 1
            return 202, None, {"Retry-After": "1"}
        del self.sessions[session.id]
        if session.file_id is not None:
            item = self.item(session.file_id, "file")
            item.content, item.versions, item.name = content, item.versions + 1, session.file_name
        else:
            self.item(session.folder_id, "folder")
            if (existing := self.child(session.folder_id, session.file_name)) is not None:
                raise BoxError(
                    409, "item_name_in_use", "Item with the same name already exists", {"conflicts": existing.mini()}
                )
            item = Item(self.new_id(), "file", session.file_name, session.folder_id, content)
            self.items[item.id] = item
        return 201, {"total_count": 1, "entries": [self.full(item)]}, {}

    # --- the store ------------------------------------------------------------------------------------------------

    def item(self, item_id: str | None, kind: str) -> Item:
        item = self.items.get(item_id or "")
        if item is None or item.type != kind:
            raise BoxError(404, "not_found", f"Not Found: the {kind} {item_id} does not exist")
        return item

    def session(self, session_id: str) -> UploadSession:
        if session_id not in self.sessions:
            raise BoxError(404, "not_found", "The upload session was not found")
        return self.sessions[session_id]

    def child(self, parent_id: str | None, name: str) -> Item | None:
        # Box compares names without regard to case.
        return next(
            (i for i in self.items.values() if i.parent_id == parent_id and i.name.casefold() == name.casefold()),
            None,
        )

    def check_name(self, name: str) -> None:
        if not name or name in (".", "..") or "/" in name or "\\" in name or name != name.rstrip() or len(name) > 255:
            raise BoxError(400, "item_name_invalid", "Item name invalid")

    def new_id(self) -> str:
        return str(next(self._ids))

    def full(self, item: Item) -> dict:
        parent = self.items.get(item.parent_id or "")
        common = {
            **item.mini(),
            "sequence_id": str(item.versions - 1),
            "parent": parent.mini() if parent else None,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if item.type == "file":
            return {
                **common,
                "size": len(item.content),
                "sha1": hashlib.sha1(item.content).hexdigest(),
                "file_version": {"type": "file_version", "id": f"{item.id}v{item.versions}"},
            }
        return common

    def _path(self, item: Item) -> str:
        names = []
        while item.parent_id is not None:
            names.append(item.name)
            item = self.items[item.parent_id]
        return "/".join(reversed(names))


@pytest.fixture(scope="session")
def box_server() -> Iterator[BoxServer]:
    """One local Box for the test session; tests call `reset()` (the `box` fixture of test_box_backend.py does)."""
    server = BoxServer()
    yield server
    server.stop()


def _multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """The parts of a multipart/form-data body in order: (name, content)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise BoxError(400, "bad_request", "a multipart/form-data body is required")
    return [
        (part.get_param("name", header="content-disposition") or "", part.get_payload(decode=True) or b"")
        for part in message.iter_parts()
    ]


def _invalid_token_challenge() -> str:
    return 'Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid."'
