"""A local Microsoft identity platform (v2.0) and Microsoft Graph drive, over HTTPS, for the onedrive destination.

HTTPS because MSAL accepts only `https://` authorities; the certificate names `localhost` and tests trust it through
APERTUR_OUTBOUND_CA_BUNDLE. What it implements, as Microsoft documents it:

- identity (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow):
  `GET /{tenant}/v2.0/.well-known/openid-configuration` (MSAL's discovery), `GET /{tenant}/oauth2/v2.0/authorize`
  (answers at once with a 302 to the redirect URI carrying `code` and `state`, as after the user consented, or with
  `response_mode=form_post` a page that posts them there),
  `POST /{tenant}/oauth2/v2.0/token` with the `authorization_code` grant (PKCE S256 checked) and the
  `refresh_token` grant; the refresh token rotates on every refresh, as Microsoft's do. Errors carry
  `error`, `error_description` ("AADSTSnnnn: …") and `error_codes`.
- Graph (https://learn.microsoft.com/graph/api/resources/driveitem): `/v1.0/me/drive` and `/v1.0/drives/{id}` with
  items addressed by id (`items/{id}`, `root`) or path (`root:/a/b:`, `items/{id}:/name:`): `GET` an item,
  `POST …/children` (a folder; `@microsoft.graph.conflictBehavior` fail (default), replace or rename),
  `PUT …:/content` (simple upload, at most 4 MiB; conflict behaviour from the query, default replace),
  `POST …:/createUploadSession` and the upload URL it returns (`PUT` fragments with `Content-Range`, in multiples
  of 320 KiB except the last, answered 202 with `nextExpectedRanges` and 200/201 with the item at the end; `GET`
  for the status; `DELETE` to cancel). An upload URL refuses a request that carries an Authorization header.
  Names compare without case, as OneDrive's do. Errors are `{"error": {"code", "message"}}`.

The session's conflict behaviour defaults to `fail` here (Graph does not say), so a client that does not ask for
`replace` sees a 409 rather than silently passing. Failure injection: `fail_next(...)` (a status with an optional
Retry-After, or a connection dropped half-way through the request body), `failing_tokens`, `expire_access_tokens()`,
`revoke_grants()`, `token_gate` to hold token requests.
"""

import base64
import hashlib
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest

from tests.servers.https_receiver import HOST_NAME, write_localhost_certificate

CHUNK_ALIGNMENT = 320 * 1024
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
DRIVE_ID = "b!local-onedrive-drive"


@dataclass
class Item:
    id: str
    name: str
    parent_id: str | None
    folder: bool
    content: bytes = b""
    mime_type: str = ""


@dataclass
class Fault:
    """Make the next `count` requests of a kind fail: `where` is "upload" (simple upload), "session" (create an
    upload session), "chunk" (a fragment PUT), "folder" (make a folder) or "token"."""

    where: str
    status: int = 500
    code: str = "generalException"
    retry_after: int | None = None
    drop: bool = False  # close the connection after half the body instead of answering
    count: int = 1
    aadsts: int = 90033  # for "token" faults: the AADSTS number (90033: a transient service error)


@dataclass
class UploadSession:
    parent_id: str
    name: str
    conflict: str
    total: int | None = None
    received: bytearray = field(default_factory=bytearray)
    expires: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(hours=1))


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None


class OneDriveServer:
    client_id = "local-onedrive-client"
    client_secret = "local-onedrive-secret"

    def __init__(self, directory: Path) -> None:
        self.certificate, key = write_localhost_certificate(directory)
        self.lock = threading.Lock()
        self.reset()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.handle(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args) -> None:
                pass

        family, *_, address = socket.getaddrinfo(HOST_NAME, 0, proto=socket.IPPROTO_TCP)[0]
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self.server = server_class(address[:2], Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{HOST_NAME}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    # --- state a test sets up and reads -------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.items: dict[str, Item] = {"ROOT": Item("ROOT", "root", None, True)}
            self.sessions: dict[str, UploadSession] = {}
            self.codes: dict[str, Grant] = {}
            self.refresh_tokens: dict[str, str] = {}  # refresh token → scope
            self.access_tokens: dict[str, float] = {}  # access token → expiry
            self.failing_tokens: set[str] = set()
            self.faults: list[Fault] = []
            self.requests: list[tuple[str, str]] = []  # (method, path without the query)
            self.token_forms: list[dict[str, str]] = []
            self.deny_next = False
            self.refreshes = 0
            self.rotate_refresh_tokens = True
            self.expires_in = 3600
            # Hold token requests until released: lets a test line two refreshes up at once.
            self.token_gate = threading.Event()
            self.token_gate.set()
            self.token_requests_arrived = threading.Semaphore(0)  # released once per token request, at arrival

    def settings(self, tenant: str = "common") -> dict[str, str]:
        """APERTUR_OAUTH["onedrive"] pointing at this server."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authorize_url": f"{self.url}/{tenant}/oauth2/v2.0/authorize",
            "token_url": f"{self.url}/{tenant}/oauth2/v2.0/token",
            "api_base": f"{self.url}/v1.0",
        }

    def grant(self, *, access_expires_in: float | None = None) -> dict:
        """A token set as the connect flow would store it."""
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        expires_in = self.expires_in if access_expires_in is None else access_expires_in
        with self.lock:
            self.refresh_tokens[refresh] = "Files.ReadWrite.All offline_access"
            self.access_tokens[access] = time.time() + expires_in
        return {"access_token": access, "refresh_token": refresh, "expires_at": time.time() + expires_in}

    def fail_next(self, where: str, **fault) -> None:
        with self.lock:
            self.faults.append(Fault(where, **fault))

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def revoke_grants(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def files(self) -> dict[str, bytes]:
        """Every file in the drive: its path below the root → its bytes."""
        with self.lock:
            return {self._path_of(item): item.content for item in self.items.values() if not item.folder}

    def item_at(self, path: str) -> Item | None:
        with self.lock:
            return self._resolve("ROOT", [segment for segment in path.split("/") if segment])

    def delete(self, path: str) -> None:
        """Delete an item (and what is below it) behind the client's back."""
        with self.lock:
            item = self._resolve("ROOT", path.split("/"))
            doomed = {item.id}
            changed = True
            while changed:
                below = {i.id for i in self.items.values() if i.parent_id in doomed} - doomed
                changed = bool(below)
                doomed |= below
            for item_id in doomed:
                del self.items[item_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- dispatch -----------------------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((request.command, path))
        segments = path.strip("/").split("/")
        if path.startswith("/v1.0/"):
            return self.graph(request, path.removeprefix("/v1.0"), query)
        if path.startswith("/upload/"):
            return self.upload_url(request, path.removeprefix("/upload/"))
        if len(segments) >= 2 and segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self.discovery(request, segments[0])
        if len(segments) == 4 and segments[1:3] == ["oauth2", "v2.0"] and segments[3] == "authorize":
            return self.authorize(request, query)
        if len(segments) == 4 and segments[1:3] == ["oauth2", "v2.0"] and segments[3] == "token":
            return self.token(request)
        self.answer(request, 404, {"error": {"code": "itemNotFound", "message": "no such endpoint"}})

    def answer(self, request, status: int, payload: dict | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        if payload is not None:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def body(self, request) -> bytes:
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    def fault(self, request, where: str) -> bool:
        """Apply the first pending fault for `where`; True when it answered (or dropped) the request."""
        with self.lock:
            fault = next((f for f in self.faults if f.where == where and f.count > 0), None)
            if fault is None:
                return False
            fault.count -= 1
        if fault.drop:
            request.rfile.read(int(request.headers.get("Content-Length") or 0) // 2)
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return True
        self.body(request)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if where == "token":  # the identity platform's error shape, `code` as the OAuth error, AADSTS number given
            payload = aad_error(fault.status, fault.code, fault.aadsts, "Injected.")[1]
        else:
            payload = {"error": {"code": fault.code, "message": "injected"}}
        self.answer(request, fault.status, payload, headers)
        return True

    # --- identity platform --------------------------------------------------------------------------------

    def discovery(self, request, tenant: str) -> None:
        base = f"{self.url}/{tenant}"
        self.answer(
            request,
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "code_challenge_methods_supported": ["plain", "S256"],
            },
        )

    def authorize(self, request, query: dict[str, str]) -> None:
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri:
            # Microsoft shows its own error page for an unknown app or redirect URI: nothing goes back to the app.
            return self.answer(request, 400, {"error": "unauthorized_client"})
        if query.get("response_type") != "code":
            params = {"error": "unsupported_response_type", "state": query.get("state", "")}
            return self.answer(request, 302, None, {"Location": f"{redirect_uri}?{urlencode(params)}"})
        with self.lock:
            denied, self.deny_next = self.deny_next, False
        if denied:  # the user cancelled on the consent screen
            params = {"error": "access_denied", "error_description": "AADSTS65004: User declined to consent."}
            params |= {"state": query["state"]} if "state" in query else {}
            return self.answer(request, 302, None, {"Location": f"{redirect_uri}?{urlencode(params)}"})
        code = secrets.token_urlsafe(24)
        challenge = query.get("code_challenge")
        if challenge and query.get("code_challenge_method", "plain") != "S256":
            challenge = f"plain:{challenge}"
        with self.lock:
            self.codes[code] = Grant(self.client_id, redirect_uri, query.get("scope", ""), challenge)
        params = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        if query.get("response_mode") == "form_post":
            return self.post_form(request, redirect_uri, params)
        self.answer(request, 302, None, {"Location": f"{redirect_uri}?{urlencode(params)}"})

    def post_form(self, request, redirect_uri: str, params: dict[str, str]) -> None:
        """`response_mode=form_post`: a page whose form the browser posts to the redirect URI at once."""
        fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in params.items())
        page = (
            f'<html><body onload="document.forms[0].submit()"><form method="POST" action="{escape(redirect_uri)}">'
            f"{fields}</form></body></html>"
        ).encode()
        request.send_response(200)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(page)))
        request.end_headers()
        request.wfile.write(page)

    def token(self, request) -> None:
        if self.fault(request, "token"):
            return
        form = {k: v[0] for k, v in parse_qs(self.body(request).decode()).items()}
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", unquote(client_id))
            form.setdefault("client_secret", unquote(client_secret))
        with self.lock:
            self.token_forms.append(form)
        self.token_requests_arrived.release()
        self.token_gate.wait(10)
        status, payload = self.exchange(form)
        self.answer(request, status, payload)

    def exchange(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") != self.client_id:
            return aad_error(400, "unauthorized_client", 700016, "Application not found in the directory.")
        if form.get("client_secret") != self.client_secret:
            return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        grant_type = form.get("grant_type")
        with self.lock:
            if grant_type == "authorization_code":
                grant = self.codes.pop(form.get("code", ""), None)
                if grant is None:
                    return aad_error(400, "invalid_grant", 70008, "The provided authorization code has expired.")
                if grant.redirect_uri != form.get("redirect_uri"):
                    return aad_error(400, "invalid_grant", 50148, "The redirect URI does not match.")
                if grant.code_challenge and not _pkce_matches(grant.code_challenge, form.get("code_verifier", "")):
                    return aad_error(400, "invalid_grant", 501481, "The Code_Verifier does not match the challenge.")
                scope = grant.scope
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh not in self.refresh_tokens:
                    return aad_error(400, "invalid_grant", 700082, "The refresh token has expired due to inactivity.")
                scope = self.refresh_tokens[refresh]
                self.refreshes += 1
                if self.rotate_refresh_tokens:
                    del self.refresh_tokens[refresh]
            else:
                return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
            access = secrets.token_urlsafe(24)
            self.access_tokens[access] = time.time() + self.expires_in
            answer = {
                "token_type": "Bearer",
                "scope": scope,
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": access,
            }
            if "offline_access" in scope.split() or grant_type == "refresh_token":
                answer["refresh_token"] = secrets.token_urlsafe(32)
                self.refresh_tokens[answer["refresh_token"]] = scope
        return 200, answer

    # --- Graph --------------------------------------------------------------------------------------------

    def graph(self, request, path: str, query: dict[str, str]) -> None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            valid = self.access_tokens.get(token, 0) > time.time()
        if not valid:
            self.body(request)
            return self.answer(
                request,
                401,
                {
                    "error": {
                        "code": "InvalidAuthenticationToken",
                        "message": "Access token has expired or is not yet valid.",
                    }
                },
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        if token in self.failing_tokens:
            self.body(request)
            return self.answer(request, 500, {"error": {"code": "generalException", "message": "failing"}})
        if path.startswith("/me/drive"):
            rest = path.removeprefix("/me/drive")
        elif path.startswith(f"/drives/{quote(DRIVE_ID, safe='')}") or path.startswith(f"/drives/{DRIVE_ID}"):
            rest = path.split("/", 3)[3] if path.count("/") >= 3 else ""
            rest = f"/{rest}" if rest else ""
        else:
            self.body(request)
            return self.answer(request, 404, {"error": {"code": "itemNotFound", "message": "The drive was not found."}})
        address, action = _split_address(rest)
        with self.lock:
            item = self._address(address)
        if item is None and not (request.command in ("PUT", "POST") and action in ("content", "createUploadSession")):
            self.body(request)
            return self.answer(
                request, 404, {"error": {"code": "itemNotFound", "message": "The resource could not be found."}}
            )
        if request.command == "GET" and action is None:
            return self.answer(request, 200, self._resource(item))
        if request.command == "POST" and action == "children":
            return self.make_folder(request, item)
        if request.command == "PUT" and action == "content":
            return self.simple_upload(request, address, query)
        if request.command == "POST" and action == "createUploadSession":
            return self.create_upload_session(request, address)
        self.body(request)
        self.answer(request, 400, {"error": {"code": "invalidRequest", "message": "Unsupported request."}})

    def make_folder(self, request, parent: Item) -> None:
        if self.fault(request, "folder"):
            return
        body = json.loads(self.body(request) or b"{}")
        name, conflict = body.get("name", ""), body.get("@microsoft.graph.conflictBehavior", "fail")
        if not name or "folder" not in body:
            return self.answer(request, 400, {"error": {"code": "invalidRequest", "message": "name and folder needed"}})
        with self.lock:
            existing = self._child(parent.id, name)
            if existing is not None and conflict == "fail":
                return self.answer(
                    request,
                    409,
                    {"error": {"code": "nameAlreadyExists", "message": "The specified item name already exists."}},
                )
            if existing is not None and conflict == "replace":
                del self.items[existing.id]
            if existing is not None and conflict == "rename":
                name = self._free_name(parent.id, name)
            folder = Item(uuid.uuid4().hex.upper(), name, parent.id, True)
            self.items[folder.id] = folder
            resource = self._resource(folder)
        self.answer(request, 201, resource)

    def simple_upload(self, request, address: tuple[str, list[str]], query: dict[str, str]) -> None:
        if self.fault(request, "upload"):
            return
        data = self.body(request)
        if len(data) > SIMPLE_UPLOAD_LIMIT:
            return self.answer(
                request, 413, {"error": {"code": "requestTooLarge", "message": "Use an upload session."}}
            )
        conflict = query.get("@microsoft.graph.conflictBehavior", "replace")
        with self.lock:
            parent = self._address((address[0], address[1][:-1]))
            if parent is None or not parent.folder:
                return self.answer(request, 404, {"error": {"code": "itemNotFound", "message": "Parent not found."}})
            status, payload = self._store(
                parent, address[1][-1], conflict, data, request.headers.get("Content-Type", "")
            )
        self.answer(request, status, payload)

    def create_upload_session(self, request, address: tuple[str, list[str]]) -> None:
        if self.fault(request, "session"):
            return
        body = json.loads(self.body(request) or b"{}")
        conflict = (body.get("item") or {}).get("@microsoft.graph.conflictBehavior", "fail")
        with self.lock:
            parent = self._address((address[0], address[1][:-1]))
            if parent is None or not parent.folder:
                return self.answer(request, 404, {"error": {"code": "itemNotFound", "message": "Parent not found."}})
            token = secrets.token_urlsafe(24)
            session = UploadSession(parent.id, address[1][-1], conflict)
            self.sessions[token] = session
        self.answer(
            request,
            200,
            {
                "uploadUrl": f"{self.url}/upload/{token}",
                "expirationDateTime": session.expires.isoformat().replace("+00:00", "Z"),
                "nextExpectedRanges": ["0-"],
            },
        )

    def upload_url(self, request, token: str) -> None:
        with self.lock:
            session = self.sessions.get(token)
        if session is None:
            self.body(request)
            return self.answer(
                request, 404, {"error": {"code": "itemNotFound", "message": "The upload session was not found."}}
            )
        if request.headers.get("Authorization"):
            self.body(request)
            return self.answer(
                request, 401, {"error": {"code": "unauthenticated", "message": "The upload URL needs no token."}}
            )
        if request.command == "DELETE":
            with self.lock:
                self.sessions.pop(token, None)
            return self.answer(request, 204)
        if request.command == "GET":
            return self.answer(request, 200, self._session_status(session))
        if request.command != "PUT":
            return self.answer(request, 405, {"error": {"code": "invalidRequest", "message": "PUT, GET or DELETE."}})
        if self.fault(request, "chunk"):
            return
        data = self.body(request)
        try:
            _, _, spec = request.headers.get("Content-Range", "").partition(" ")
            span, _, total = spec.partition("/")
            start, _, end = span.partition("-")
            start, end, total = int(start), int(end), int(total)
        except ValueError:
            return self.answer(request, 400, {"error": {"code": "invalidRequest", "message": "Bad Content-Range."}})
        with self.lock:
            if start != len(session.received) or end - start + 1 != len(data):
                return self.answer(
                    request,
                    416,
                    {"error": {"code": "invalidRange", "message": "The fragment overlaps or skips bytes."}},
                )
            last = end + 1 == total
            if not last and len(data) % CHUNK_ALIGNMENT:
                return self.answer(
                    request,
                    400,
                    {"error": {"code": "invalidRequest", "message": "Fragments must be multiples of 320 KiB."}},
                )
            session.total = total
            session.received += data
            if not last:
                status, payload = 202, self._session_status(session)
            else:
                del self.sessions[token]
                parent = self.items.get(session.parent_id)
                if parent is None:
                    status, payload = 404, {"error": {"code": "itemNotFound", "message": "Parent not found."}}
                else:
                    status, payload = self._store(parent, session.name, session.conflict, bytes(session.received), "")
        self.answer(request, status, payload)

    # --- drive model (call with the lock held) ------------------------------------------------------------

    def _session_status(self, session: UploadSession) -> dict:
        return {
            "expirationDateTime": session.expires.isoformat().replace("+00:00", "Z"),
            "nextExpectedRanges": [f"{len(session.received)}-"],
        }

    def _store(self, parent: Item, name: str, conflict: str, data: bytes, mime_type: str) -> tuple[int, dict]:
        existing = self._child(parent.id, name)
        if existing is not None and existing.folder:
            return 409, {"error": {"code": "nameAlreadyExists", "message": "A folder has that name."}}
        if existing is not None and conflict == "fail":
            return 409, {"error": {"code": "nameAlreadyExists", "message": "The specified item name already exists."}}
        if existing is not None and conflict == "replace":
            existing.content, existing.mime_type = data, mime_type or existing.mime_type
            return 200, self._resource(existing)
        if existing is not None:
            name = self._free_name(parent.id, name)
        item = Item(uuid.uuid4().hex.upper(), name, parent.id, False, data, mime_type or "application/octet-stream")
        self.items[item.id] = item
        return 201, self._resource(item)

    def _child(self, parent_id: str, name: str) -> Item | None:
        return next(
            (i for i in self.items.values() if i.parent_id == parent_id and i.name.lower() == name.lower()), None
        )

    def _free_name(self, parent_id: str, name: str) -> str:
        stem, dot, extension = name.rpartition(".") if "." in name else (name, "", "")
        number = 1
        while self._child(parent_id, f"{stem} {number}{dot}{extension}") is not None:
            number += 1
        return f"{stem} {number}{dot}{extension}"

    def _resolve(self, start_id: str, names: list[str]) -> Item | None:
        item = self.items.get(start_id)
        for name in names:
            if item is None:
                return None
            item = self._child(item.id, name)
        return item

    def _address(self, address: tuple[str, list[str]]) -> Item | None:
        start, names = address
        return self._resolve(start, names)

    def _path_of(self, item: Item) -> str:
        names = []
        while item.parent_id is not None:
            names.append(item.name)
            item = self.items[item.parent_id]
        return "/".join(reversed(names))

    def _resource(self, item: Item) -> dict:
        resource = {
            "id": item.id,
            "name": item.name,
            "size": len(item.content),
            "webUrl": f"{self.url}/personal/me/Documents/{quote(self._path_of(item))}",
            "parentReference": {"driveId": DRIVE_ID, "driveType": "personal", "id": item.parent_id},
        }
        if item.folder:
            resource["folder"] = {"childCount": sum(1 for i in self.items.values() if i.parent_id == item.id)}
        else:
            resource["file"] = {
                "mimeType": item.mime_type,
                "hashes": {"sha256Hash": hashlib.sha256(item.content).hexdigest().upper()},
            }
        return resource


def _split_address(rest: str) -> tuple[tuple[str, list[str]], str | None]:
    """`/root`, `/items/{id}`, `/root:/a/b:`, `/items/{id}:/a:`, each optionally followed by `/children`,
    `/content` or `/createUploadSession` → ((start id, names below it), action)."""
    path_part = None
    if ":/" in rest:
        rest, _, path_part = rest.partition(":/")
        path_part, _, action_part = path_part.partition(":")
        action = action_part.strip("/") or None
    else:
        pieces = rest.strip("/").split("/")
        action = pieces[2] if pieces[:1] == ["items"] and len(pieces) > 2 else None
        if pieces[:1] == ["root"] and len(pieces) > 1:
            action = pieces[1]
        rest = "/" + "/".join(pieces[:2] if pieces[:1] == ["items"] else pieces[:1])
    pieces = rest.strip("/").split("/")
    start = "ROOT" if pieces == ["root"] else unquote(pieces[1]) if pieces[:1] == ["items"] and len(pieces) > 1 else ""
    if start == "root":
        start = "ROOT"
    names = [unquote(name) for name in path_part.split("/") if name] if path_part else []
    return (start, names), action


def _pkce_matches(challenge: str, verifier: str) -> bool:
    if challenge.startswith("plain:"):
        return challenge.removeprefix("plain:") == verifier
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return secrets.compare_digest(digest, challenge)


def aad_error(status: int, error: str, code: int, description: str) -> tuple[int, dict]:
    """An error answer of the Microsoft identity platform's token endpoint."""
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} Timestamp: {datetime.now(UTC)}",
        "error_codes": [code],
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }


@pytest.fixture(scope="session")
def onedrive_server(tmp_path_factory):
    """One local Microsoft identity platform + Graph drive for the test session; tests call `reset()`."""
    server = OneDriveServer(tmp_path_factory.mktemp("onedrive"))
    yield server
    server.stop()
