"""A local Google: the OAuth 2.0 endpoints and the part of Drive v3 the google_drive destination uses, as Google
documents them, so google-api-python-client and google-auth run unmodified against it.

- OAuth (https://developers.google.com/identity/protocols/oauth2/web-server): `GET /o/oauth2/v2/auth` answers
  with a redirect carrying `code` and `state` (no consent page); `POST /token` takes the authorization_code grant
  (PKCE S256 checked when a challenge was sent) and the refresh_token grant, answers `invalid_grant` for a revoked
  or unknown grant; `POST /revoke` revokes a token and, as Google does, the whole grant it belongs to (revoking the
  refresh token ends its access tokens; revoking an access token ends its refresh token). A refresh token is issued
  only for `access_type=offline`; Google does not rotate refresh tokens, but `rotate_refresh_tokens` makes it.
  `deny_next_authorization()` makes the next authorisation answer `error=access_denied`, as when the user clicks
  "Cancel" on the consent screen.
- Drive v3 (https://developers.google.com/drive/api/reference/rest/v3/files): `GET /drive/v3/files` with the
  `q` clauses `name =`, `'<id>' in parents`, `trashed = false`, `mimeType =`/`!=`; `POST /drive/v3/files`
  (metadata only: folders); `DELETE /drive/v3/files/<id>`; `POST /upload/drive/v3/files` and
  `PATCH /upload/drive/v3/files/<id>` with `uploadType=media` (the bytes alone), `multipart`
  (multipart/related: JSON metadata, then the bytes) or `resumable` (answers a session URI in `Location`; chunks
  are PUT there with `Content-Range`; 308 with `Range` until the last; `bytes */<total>` asks how much arrived).
- Errors in Drive's shape `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`.

It keeps every file's bytes (`files`, `path_of`) and can be told to fail (`fail_next`).
"""

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
ROOT_ID = "0AROOTFOLDERmyDrive"
CLIENT_ID = "local-client.apps.googleusercontent.com"
CLIENT_SECRET = "local-google-secret"


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    created_time: str
    content: bytes = b""
    trashed: bool = False

    def resource(self, trashed: bool) -> dict[str, Any]:
        return {
            "trashed": trashed,
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "createdTime": self.created_time,
            "parents": list(self.parents),
        }


@dataclass
class Fault:
    """What the server does to the next matching request instead of answering it."""

    matches: Callable[[str, str], bool]  # (method, path with query) → applies
    status: int = 500
    reason: str = "backendError"
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # read part of the body, then close the socket without answering
    skip: int = 0  # let this many matching requests through first
    answer: tuple[int, dict[str, str], Any] | None = None  # answer this (status, headers, payload) instead


@dataclass
class UploadSession:
    file_id: str | None  # an update, else a create
    metadata: dict[str, Any]
    total: int | None
    received: bytearray = field(default_factory=bytearray)


@dataclass
class Grant:
    refresh_token: str | None
    scope: str


class GoogleServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.reset()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # --- state -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
            self.expires_in = 3599
            self.rotate_refresh_tokens = False
            self.files: dict[str, DriveFile] = {}
            self.access_tokens: dict[str, float] = {}  # token → expiry (unix seconds)
            self.refresh_tokens: dict[str, Grant] = {}
            self.access_grants: dict[str, str] = {}  # access token → the refresh token of its grant
            self.codes: dict[str, dict[str, str]] = {}
            self.uploads: dict[str, UploadSession] = {}
            self.faults: list[Fault] = []
            self.requests: list[tuple[str, str]] = []  # (method, path with query), in arrival order
            self.token_forms: list[dict[str, str]] = []  # every token request's form, client secret included
            self.revoked: list[str] = []  # the tokens revoked through /revoke, in order
            self.deny_next = False
            self.refreshes = 0
            self._clock = 0
        # Hold refresh-token requests until released: lets a test line two refreshes up at once.
        self.token_gate = threading.Event()
        self.token_gate.set()
        self.token_requests_arrived = threading.Semaphore(0)

    def grant(self, *, expires_in: float | None = None, scope: str = "https://www.googleapis.com/auth/drive.file"):
        """A token set as the connect flow stores it (OAuthToken's fields)."""
        access, refresh = f"ya29.{secrets.token_urlsafe(24)}", f"1//{secrets.token_urlsafe(32)}"
        lifetime = self.expires_in if expires_in is None else expires_in
        with self.lock:
            self.access_tokens[access] = time.time() + lifetime
            self.refresh_tokens[refresh] = Grant(refresh, scope)
            self.access_grants[access] = refresh
        return {"access_token": access, "refresh_token": refresh, "expires_at": time.time() + lifetime}

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def revoke_everything(self) -> None:
        with self.lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def deny_next_authorization(self) -> None:
        with self.lock:
            self.deny_next = True

    def fail_next(self, method: str, path_part: str, *, times: int = 1, **fault: Any) -> None:
        """Make the next `times` requests whose method is `method` and whose path (with query) contains
        `path_part` fail as `fault` says (see Fault)."""
        for _ in range(times):
            self.faults.append(Fault(matches=lambda m, p: m == method and path_part in p, **fault))

    def new_folder(self, name: str, parent: str = ROOT_ID) -> str:
        with self.lock:
            return self._create(name, FOLDER_MIME_TYPE, [parent]).id

    def trash(self, file_id: str) -> None:
        with self.lock:
            self.files[file_id].trashed = True

    def delete(self, file_id: str) -> None:
        with self.lock:
            self._delete(file_id)

    def path_of(self, file_id: str, below: str) -> str:
        """The file's path of names from the folder `below` (exclusive)."""
        names, current = [], self.files[file_id]
        while True:  # `below` may be the root, which is no entry of `files`
            names.append(current.name)
            if current.parents[0] == below:
                return "/".join(reversed(names))
            current = self.files[current.parents[0]]

    def files_below(self, folder_id: str) -> dict[str, bytes]:
        """Every non-folder file under `folder_id`, by path from it."""
        found = {}
        with self.lock:
            for drive_file in self.files.values():
                if drive_file.mime_type != FOLDER_MIME_TYPE and self._is_below(drive_file, folder_id):
                    found[self.path_of(drive_file.id, folder_id)] = drive_file.content
        return found

    def folders_named(self, name: str) -> list[DriveFile]:
        return [f for f in self.files.values() if f.name == name and f.mime_type == FOLDER_MIME_TYPE]

    def _trashed(self, drive_file: DriveFile | None) -> bool:
        """Trashed itself or below a trashed folder (Drive's `trashed` says either)."""
        while drive_file is not None:
            if drive_file.trashed:
                return True
            drive_file = self.files.get(drive_file.parents[0]) if drive_file.parents else None
        return False

    def _is_below(self, drive_file: DriveFile, folder_id: str) -> bool:
        while drive_file.parents:
            if drive_file.parents[0] == folder_id:
                return True
            parent = self.files.get(drive_file.parents[0])
            if parent is None:
                return False
            drive_file = parent
        return False

    def _create(self, name: str, mime_type: str, parents: list[str]) -> DriveFile:
        self._clock += 1
        # createdTime has millisecond resolution in Drive; a counter keeps creation order strict here.
        moment = datetime.fromtimestamp(1_700_000_000 + self._clock / 1000, UTC)
        drive_file = DriveFile(
            id=secrets.token_urlsafe(24).replace("-", "x").replace("_", "y"),
            name=name,
            mime_type=mime_type,
            parents=parents,
            created_time=moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        )
        self.files[drive_file.id] = drive_file
        return drive_file

    def _delete(self, file_id: str) -> None:
        # Deleting a folder deletes what it holds (Drive: "If the target is a folder, all descendants…").
        for child in [f.id for f in self.files.values() if file_id in f.parents]:
            self._delete(child)
        self.files.pop(file_id, None)

    def _exists(self, file_id: str) -> bool:
        return file_id == ROOT_ID or file_id in self.files

    # --- OAuth -----------------------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri:
            return 400, {}, _oauth_error("invalid_client", "The OAuth client was not found.")
        if query.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", "state": query.get("state", "")})
        with self.lock:
            denied, self.deny_next = self.deny_next, False
        if denied:
            return _redirect(redirect_uri, {"error": "access_denied", "state": query.get("state", "")})
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = dict(query)
        return _redirect(redirect_uri, {"code": code, "scope": query.get("scope", ""), "state": query.get("state", "")})

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        with self.lock:
            self.token_forms.append(dict(form))
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return 401, {}, _oauth_error("invalid_client", "Unauthorized")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            self.token_requests_arrived.release()
            self.token_gate.wait(10)
            return self._refresh(form)
        return 400, {}, _oauth_error("unsupported_grant_type", "Invalid grant_type: " + str(grant_type))

    def _exchange_code(self, form: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        with self.lock:
            request = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if request is None:
            return 400, {}, _oauth_error("invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != request.get("redirect_uri"):
            return 400, {}, _oauth_error("redirect_uri_mismatch", "Bad Request")
        challenge = request.get("code_challenge")
        if challenge:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if request.get("code_challenge_method") != "S256" or digest != challenge:
                return 400, {}, _oauth_error("invalid_grant", "Invalid code verifier.")
        access = f"ya29.{secrets.token_urlsafe(24)}"
        answer = {"access_token": access, "expires_in": self.expires_in, "token_type": "Bearer"}
        answer["scope"] = request.get("scope", "")
        with self.lock:
            self.access_tokens[access] = time.time() + self.expires_in
            if request.get("access_type") == "offline":
                answer["refresh_token"] = f"1//{secrets.token_urlsafe(32)}"
                self.refresh_tokens[answer["refresh_token"]] = Grant(answer["refresh_token"], answer["scope"])
                self.access_grants[access] = answer["refresh_token"]
        return 200, {}, answer

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        with self.lock:
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None:
                return 400, {}, _oauth_error("invalid_grant", "Token has been expired or revoked.")
            self.refreshes += 1
            access = f"ya29.{secrets.token_urlsafe(24)}"
            self.access_tokens[access] = time.time() + self.expires_in
            answer = {"access_token": access, "expires_in": self.expires_in, "token_type": "Bearer"}
            answer["scope"] = grant.scope
            refresh = grant.refresh_token
            if self.rotate_refresh_tokens:
                del self.refresh_tokens[grant.refresh_token]
                refresh = answer["refresh_token"] = f"1//{secrets.token_urlsafe(32)}"
                self.refresh_tokens[refresh] = Grant(refresh, grant.scope)
                for other, owner in self.access_grants.items():
                    if owner == grant.refresh_token:
                        self.access_grants[other] = refresh
            self.access_grants[access] = refresh
        return 200, {}, answer

    def revoke(self, token: str) -> tuple[int, dict[str, str], dict]:
        """Google revokes the grant, not only the token: "If the token is an access token and it has a
        corresponding refresh token, the refresh token will also be revoked", and a revoked refresh token ends the
        access tokens issued for it (https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke)."""
        with self.lock:
            refresh = token if token in self.refresh_tokens else self.access_grants.get(token)
            if token not in self.refresh_tokens and token not in self.access_tokens:
                return 400, {}, _oauth_error("invalid_token", "Token expired or revoked")
            self.revoked.append(token)
            self.access_tokens.pop(token, None)
            if refresh is not None:
                self.refresh_tokens.pop(refresh, None)
                for access in [access for access, owner in self.access_grants.items() if owner == refresh]:
                    self.access_tokens.pop(access, None)
                    del self.access_grants[access]
        return 200, {}, {}

    def token_valid(self, authorization: str) -> bool:
        token = authorization.removeprefix("Bearer ")
        with self.lock:
            return self.access_tokens.get(token, 0) > time.time()

    # --- Drive -----------------------------------------------------------------------------------------

    def list_files(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        try:
            match = _query_matcher(query.get("q", ""))
        except ValueError as error:
            return _drive_error(400, "invalidQuery", f"Invalid Value: {error}")
        with self.lock:
            found = [f for f in self.files.values() if match(f, self._trashed(f))]
        if query.get("orderBy") == "createdTime":
            found.sort(key=lambda f: f.created_time)
        return (
            200,
            {},
            {"kind": "drive#fileList", "files": [_fields(f.resource(self._trashed(f)), query) for f in found]},
        )

    def create_metadata(self, metadata: dict[str, Any], query: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        parents = _parents(metadata)
        with self.lock:
            missing = next((p for p in parents if not self._exists(p)), None)
            if missing is not None:
                return _not_found(missing)
            drive_file = self._create(metadata.get("name", "Untitled"), metadata.get("mimeType", ""), parents)
            return 200, {}, _fields(drive_file.resource(self._trashed(drive_file)), query)

    def delete_file(self, file_id: str) -> tuple[int, dict[str, str], dict | None]:
        with self.lock:
            if file_id not in self.files:
                return _not_found(file_id)
            self._delete(file_id)
        return 204, {}, None

    def store(
        self, file_id: str | None, metadata: dict[str, Any], content: bytes, query: dict[str, str]
    ) -> tuple[int, dict[str, str], dict]:
        with self.lock:
            if file_id is not None:
                drive_file = self.files.get(file_id)
                if drive_file is None:
                    return _not_found(file_id)
            else:
                parents = _parents(metadata)
                missing = next((p for p in parents if not self._exists(p)), None)
                if missing is not None:
                    return _not_found(missing)
                drive_file = self._create(metadata.get("name", "Untitled"), metadata.get("mimeType", ""), parents)
            drive_file.content = bytes(content)
            return 200, {}, _fields(drive_file.resource(self._trashed(drive_file)), query)

    def start_upload(
        self, file_id: str | None, metadata: dict[str, Any], headers: Any, query: dict[str, str]
    ) -> tuple[int, dict[str, str], dict]:
        with self.lock:
            if file_id is not None and file_id not in self.files:
                return _not_found(file_id)
            upload_id = secrets.token_urlsafe(24)
            total = headers.get("X-Upload-Content-Length")
            self.uploads[upload_id] = UploadSession(file_id, metadata, int(total) if total else None)
            self.uploads[upload_id].metadata["_query"] = query
        target = "/upload/drive/v3/files" + (f"/{file_id}" if file_id else "")
        location = f"{self.url}{target}?{urlencode({'uploadType': 'resumable', 'upload_id': upload_id})}"
        return 200, {"Location": location}, {}

    def put_chunk(self, upload_id: str, content_range: str, chunk: bytes) -> tuple[int, dict[str, str], dict]:
        upload = self.uploads.get(upload_id)
        if upload is None:
            return _drive_error(404, "notFound", "Upload session not found.")
        status_query = re.fullmatch(r"bytes \*/(\d+|\*)", content_range)
        ranged = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range)
        if status_query is None and ranged is None:
            return _drive_error(400, "badContent", "Invalid Content-Range header.")
        if ranged is not None:
            first, last, total = int(ranged[1]), int(ranged[2]), ranged[3]
            if first != len(upload.received) or last - first + 1 != len(chunk):
                return _drive_error(400, "badContent", "Content-Range does not follow the bytes received.")
            upload.received += chunk
            if total != "*":
                upload.total = int(total)
        if upload.total is not None and len(upload.received) >= upload.total:
            del self.uploads[upload_id]
            metadata = dict(upload.metadata)
            query = metadata.pop("_query")
            return self.store(upload.file_id, metadata, bytes(upload.received), query)
        headers = {"Range": f"bytes=0-{len(upload.received) - 1}"} if upload.received else {}
        return 308, headers, {}

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None and fault.skip:
                fault.skip -= 1
                return None
            if fault is not None:
                self.faults.remove(fault)
            return fault

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(google: GoogleServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.route("GET")

        def do_POST(self) -> None:
            self.route("POST")

        def do_PATCH(self) -> None:
            self.route("PATCH")

        def do_PUT(self) -> None:
            self.route("PUT")

        def do_DELETE(self) -> None:
            self.route("DELETE")

        def route(self, method: str) -> None:
            google.requests.append((method, self.path))
            fault = google.take_fault(method, self.path)
            if fault is not None and fault.drop_connection:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length // 2)
                self.close_connection = True
                self.connection.close()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if fault is not None and fault.answer is not None:
                return self.answer(*fault.answer)
            if fault is not None:
                return self.answer(*_drive_error(fault.status, fault.reason, "Injected failure.", fault.headers))
            parts = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            path = parts.path
            if path == "/o/oauth2/v2/auth" and method == "GET":
                return self.answer(*google.authorize(query))
            if path == "/token" and method == "POST":
                return self.answer(*google.token({k: v[0] for k, v in parse_qs(body.decode()).items()}))
            if path == "/revoke" and method == "POST":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                return self.answer(*google.revoke(form.get("token") or query.get("token", "")))
            if not google.token_valid(self.headers.get("Authorization") or ""):
                return self.answer(*_unauthenticated())
            self.answer(*self.drive(method, path, query, body))

        def drive(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple:
            upload = re.fullmatch(r"/upload/drive/v3/files(?:/([^/]+))?", path)
            if upload is not None:
                file_id = upload[1]
                upload_type = query.get("uploadType")
                if method == "PUT" and upload_type == "resumable" and "upload_id" in query:
                    return google.put_chunk(query["upload_id"], self.headers.get("Content-Range", ""), body)
                if (method, file_id is None) not in {("POST", True), ("PATCH", False)}:
                    return _drive_error(405, "methodNotAllowed", "Method not allowed.")
                if upload_type == "media":  # the bytes alone (googleapiclient's update without metadata)
                    return google.store(file_id, {}, body, query)
                if upload_type == "multipart":
                    metadata, content = _multipart_related(self.headers.get("Content-Type", ""), body)
                    return google.store(file_id, metadata, content, query)
                if upload_type == "resumable":
                    metadata = json.loads(body) if body else {}
                    return google.start_upload(file_id, metadata, self.headers, query)
                return _drive_error(400, "invalidParameter", "Invalid value for uploadType.")
            if path == "/drive/v3/files" and method == "GET":
                return google.list_files(query)
            if path == "/drive/v3/files" and method == "POST":
                return google.create_metadata(json.loads(body or b"{}"), query)
            single = re.fullmatch(r"/drive/v3/files/([^/]+)", path)
            if single is not None and method == "DELETE":
                return google.delete_file(single[1])
            return _drive_error(404, "notFound", "Not Found")

        def answer(self, status: int, headers: dict[str, str], payload: dict | None) -> None:
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if payload is not None:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _parents(metadata: dict[str, Any]) -> list[str]:
    """`root` is Drive's alias for the id of My Drive's root folder."""
    return [ROOT_ID if parent == "root" else parent for parent in metadata.get("parents") or ["root"]]


def _redirect(uri: str, parameters: dict[str, str]) -> tuple[int, dict[str, str], None]:
    separator = "&" if "?" in uri else "?"
    return 302, {"Location": f"{uri}{separator}{urlencode(parameters)}"}, None


def _oauth_error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _drive_error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict]:
    domain = "usageLimits" if "RateLimit" in reason else "global"
    error = {"code": status, "message": message, "errors": [{"domain": domain, "reason": reason, "message": message}]}
    return status, dict(headers or {}), {"error": error}


def _not_found(file_id: str) -> tuple[int, dict[str, str], dict]:
    return _drive_error(404, "notFound", f"File not found: {file_id}.")


def _unauthenticated() -> tuple[int, dict[str, str], dict]:
    status, _, body = _drive_error(401, "authError", "Invalid Credentials")
    body["error"]["message"] = "Request had invalid authentication credentials."
    return status, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}, body


def _fields(resource: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """The `fields` parameter, for the shapes the backend asks for ("id", "files(id,createdTime)")."""
    wanted = query.get("fields")
    if not wanted:
        return {key: resource[key] for key in ("kind", "id", "name", "mimeType")}
    inner = re.fullmatch(r"files\((.*)\)", wanted)
    names = (inner[1] if inner else wanted).split(",")
    return {name: resource[name] for name in names if name in resource}


_CLAUSE = re.compile(
    r"name = '((?:[^'\\]|\\.)*)'|'((?:[^'\\]|\\.)*)' in parents|trashed = (true|false)"
    r"|mimeType (=|!=) '((?:[^'\\]|\\.)*)'"
)


def _query_matcher(q: str) -> Callable[[DriveFile, bool], bool]:
    """The `q` of files.list for the clauses the backend sends, joined by `and`; called with a file and whether it
    is trashed."""
    tests: list[Callable[[DriveFile, bool], bool]] = []
    for clause in (part.strip() for part in q.split(" and ")) if q else ():
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValueError(clause)
        name, parent, trashed, operator, mime_type = (
            _unescaped(match[1]),
            _unescaped(match[2]),
            match[3],
            match[4],
            _unescaped(match[5]),
        )
        if match[1] is not None:
            tests.append(lambda f, _, name=name: f.name == name)
        elif match[2] is not None:
            parent = ROOT_ID if parent == "root" else parent
            tests.append(lambda f, _, parent=parent: parent in f.parents)
        elif trashed is not None:
            tests.append(lambda f, is_trashed, trashed=trashed: is_trashed == (trashed == "true"))
        else:
            tests.append(lambda f, _, op=operator, mime=mime_type: (f.mime_type == mime) == (op == "="))
    return lambda drive_file, trashed: all(test(drive_file, trashed) for test in tests)


def _unescaped(value: str | None) -> str | None:
    return re.sub(r"\\(.)", r"\1", value) if value is not None else None


def _multipart_related(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a multipart/related upload body."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        raise ValueError("multipart/related without a boundary")
    delimiter = re.compile(rb"\r?\n--" + re.escape(boundary[1].encode()))
    parts = delimiter.split(b"\n" + body)[1:-1]  # before the first delimiter: nothing; after the last: "--"
    contents = []
    for part in parts:
        separator = min((i for i in (part.find(b"\r\n\r\n"), part.find(b"\n\n")) if i >= 0), default=-1)
        gap = 4 if part[separator : separator + 4] == b"\r\n\r\n" else 2
        contents.append(part[separator + gap :])
    return json.loads(contents[0] or b"{}"), contents[1]


@pytest.fixture(scope="session")
def google_server():
    server = GoogleServer()
    yield server
    server.stop()
