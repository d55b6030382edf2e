"""A local Dropbox: the OAuth endpoints and the file-upload routes of API v2 as Dropbox documents them, so the
official `dropbox` SDK runs against it unmodified (pointed here by APERTUR_OAUTH["dropbox"] api_base/upload_base).

- `GET /oauth2/authorize` answers with a redirect to `redirect_uri` carrying `code` and `state` (the user agreed);
  `POST /oauth2/token` takes the `authorization_code` grant (client secret, or PKCE `code_verifier` S256/plain)
  and the `refresh_token` grant (tests/servers/oauth_provider.py's token logic: rotation on demand,
  `invalid_grant`); `POST /2/auth/token/revoke` revokes the grant of the bearer token.
- `POST /2/files/upload` and `/2/files/upload_session/{start,append_v2,finish}` on the content host: arguments in
  the `Dropbox-API-Arg` header, bytes in the body, the `content_hash` of each body verified, write modes `add`
  and `overwrite`, missing parent folders created, conflicts and session errors answered with the documented 409
  bodies (https://www.dropbox.com/developers/documentation/http/documentation#files-upload).
- 401 with `expired_access_token` / `invalid_access_token`, 429 with `Retry-After` and a JSON `too_many_requests`
  or `too_many_write_operations` body, 500, and a connection dropped half-way through a request body, on demand.

The API and the content host are one server here: the SDK is given the same base for both.
"""

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.servers.oauth_provider import TokenIssuer

BLOCK_SIZE = 4 * 1024 * 1024  # https://www.dropbox.com/developers/reference/content-hash
CONTENT_ROUTES = {
    "files/upload",
    "files/upload_session/start",
    "files/upload_session/append_v2",
    "files/upload_session/finish",
}
ACCESS_TOKEN_LIFETIME = 14400  # what Dropbox's token endpoint answers as expires_in


def content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 of the concatenated SHA-256 digests of each 4 MiB block."""
    blocks = b"".join(hashlib.sha256(data[at : at + BLOCK_SIZE]).digest() for at in range(0, len(data), BLOCK_SIZE))
    return hashlib.sha256(blocks).hexdigest()


@dataclass
class StoredFile:
    path_display: str
    data: bytes
    id: str
    rev: str


@dataclass
class Failure:
    """One injected failure of the next request to `route`: an HTTP status with Dropbox's body for it, or
    `drop` (the connection closed after half the request body)."""

    route: str
    status: int = 500
    retry_after: int | str = 1  # seconds, or an HTTP date
    reason: str = "too_many_requests"
    drop: bool = False
    delay: float = 0  # seconds the server stalls before answering
    json_body: bool = True  # a 429's body: JSON, or plain text with the wait in Retry-After only
    content_type: str = "application/json"  # a 401's, as sent (the SDK reads only exactly application/json)


@dataclass
class UploadSession:
    data: bytearray = field(default_factory=bytearray)


class ApiRefusal(Exception):
    """A route's documented error: HTTP 409 with `error_summary` and the error union."""

    def __init__(self, summary: str, error: dict[str, Any]) -> None:
        super().__init__(summary)
        self.summary, self.error = summary, error


class DropboxServer:
    def __init__(self) -> None:
        self.tokens = TokenIssuer(rotate_refresh_tokens=False, expires_in=ACCESS_TOKEN_LIFETIME)
        self.client_id, self.client_secret = "dropbox-app-key", "dropbox-app-secret"
        self.tokens.client_id, self.tokens.client_secret = self.client_id, self.client_secret
        self.lock = threading.Lock()
        self.released = threading.Event()  # set when stopping: no stalled answer outlives the server
        self.reset()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/oauth2/authorize":
                    return self.answer_text(404, "Not found")
                status, location, text = server.authorize(parse_qs(parts.query))
                if location:
                    self.send_response(status)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.answer_text(status, text)

            def do_POST(self) -> None:
                route = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                failure = server.failure_for(route.removeprefix("/2/"))
                if failure is not None and failure.drop:
                    self.rfile.read(length // 2)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = self.rfile.read(length)
                if route == "/oauth2/token":
                    return self.answer_json(*server.token(parse_qs(body.decode()), self.headers.get("Authorization")))
                if not route.startswith("/2/"):
                    return self.answer_text(404, "Not found")
                if failure is not None:
                    server.released.wait(failure.delay)
                    return self.answer_failure(failure)
                self.api_call(route.removeprefix("/2/"), body)

            def api_call(self, route: str, body: bytes) -> None:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                refused = server.token_refusal(token)
                if refused:
                    return self.answer_json(401, {"error_summary": f"{refused}/..", "error": {".tag": refused}})
                try:
                    if route in CONTENT_ROUTES:
                        if self.headers.get("Content-Type") != "application/octet-stream":
                            raise ValueError(f'Bad HTTP "Content-Type" header: "{self.headers.get("Content-Type")}"')
                        arg = json.loads(self.headers.get("Dropbox-API-Arg") or "null")
                    else:
                        arg = json.loads(body or b"null")
                    result = server.call(route, arg, body, token)
                except ApiRefusal as refusal:
                    return self.answer_json(409, {"error_summary": refusal.summary + "/..", "error": refusal.error})
                except (ValueError, KeyError, TypeError) as error:
                    return self.answer_text(400, f'Error in call to API function "{route}": {error}')
                self.answer_json(200, result)

            def answer_failure(self, failure: Failure) -> None:
                if failure.status == 401:
                    body = {"error_summary": "expired_access_token/..", "error": {".tag": "expired_access_token"}}
                    return self.answer(401, json.dumps(body).encode(), failure.content_type)
                if failure.status == 429 and not failure.json_body:
                    # "You can assume that a plain text response is equivalent to too_many_requests."
                    headers = {"Retry-After": str(failure.retry_after)}
                    return self.answer(429, b"Too many requests", "text/plain; charset=utf-8", headers)
                if failure.status == 429:
                    reason = failure.reason
                    body = {"error_summary": f"{reason}/..", "error": {"reason": {".tag": reason}}}
                    body["error"]["retry_after"] = failure.retry_after
                    return self.answer_json(429, body, headers={"Retry-After": str(failure.retry_after)})
                self.answer_text(failure.status, "Internal Server Error")

            def answer_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                self.answer(status, json.dumps(payload).encode(), "application/json", headers)

            def answer_text(self, status: int, text: str) -> None:
                self.answer(status, text.encode(), "text/plain; charset=utf-8")

            def answer(
                self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Dropbox-Request-Id", secrets.token_hex(8))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.files: dict[str, StoredFile] = {}  # lower-cased path → file
            self.folders: dict[str, str] = {}  # lower-cased path → path as first created
            self.sessions: dict[str, UploadSession] = {}
            self.failures: list[Failure] = []
            self.calls: list[str] = []
            self.codes: dict[str, dict[str, str]] = {}
            self.refuse_authorization = False
            self.authorize_requests: list[dict[str, str]] = []
            self.token_forms: list[dict[str, str]] = []  # every token request's form, client secret included
            self.revoked: list[str] = []  # the access tokens revoked through auth/token/revoke, in order
        tokens = self.tokens
        with tokens.lock:
            tokens.refresh_tokens.clear()
            tokens.access_tokens.clear()
            tokens.grants.clear()
            tokens.refreshes = 0
            tokens.rotate_refresh_tokens = False
        tokens.token_gate.set()
        while tokens.token_requests_arrived.acquire(blocking=False):
            pass

    def settings(self) -> dict[str, str]:
        """APERTUR_OAUTH["dropbox"] pointing at this server."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authorize_url": f"{self.url}/oauth2/authorize",
            "token_url": f"{self.url}/oauth2/token",
            "revoke_url": f"{self.url}/2/auth/token/revoke",
            "api_base": self.url,
            "upload_base": self.url,
        }

    # What tests arrange and read.

    def fail(self, route: str, **failure: Any) -> None:
        with self.lock:
            self.failures.append(Failure(route, **failure))

    def expire(self, access_token: str) -> None:
        with self.tokens.lock:
            self.tokens.access_tokens[access_token] = time.time() - 1

    def delete(self, path: str) -> None:
        """Delete a file or a folder with everything in it, as a user would in the Dropbox app."""
        lower = path.lower().rstrip("/")
        with self.lock:
            for store in (self.files, self.folders):
                for key in [key for key in store if key == lower or key.startswith(lower + "/")]:
                    del store[key]

    def delivered(self) -> dict[str, bytes]:
        with self.lock:
            return {stored.path_display: stored.data for stored in self.files.values()}

    # The OAuth endpoints.

    def authorize(self, query: dict[str, list[str]]) -> tuple[int, str, str]:
        params = {name: values[0] for name, values in query.items()}
        with self.lock:
            self.authorize_requests.append(params)
        if params.get("client_id") != self.client_id:
            return 400, "", "Invalid client_id"
        if params.get("response_type") != "code" or not params.get("redirect_uri"):
            return 400, "", "Invalid response_type or missing redirect_uri"
        if params.get("code_challenge_method", "plain") not in {"S256", "plain"}:
            return 400, "", "Invalid code_challenge_method"
        state = {"state": params["state"]} if "state" in params else {}
        if self.refuse_authorization:  # the user clicked "Cancel" on Dropbox's consent page
            answer = {
                "error": "access_denied",
                "error_description": "The user chose not to give your app access",
                **state,
            }
            return 302, f"{params['redirect_uri']}?{urlencode(answer)}", ""
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = params
        answer = {"code": code, **state}
        return 302, f"{params['redirect_uri']}?{urlencode(answer)}", ""

    def token(self, form: dict[str, list[str]], authorization: str | None) -> tuple[int, dict[str, Any]]:
        values = {name: items[0] for name, items in form.items()}
        if authorization and authorization.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
            values.setdefault("client_id", client_id)
            values.setdefault("client_secret", client_secret)
        with self.lock:
            self.token_forms.append(dict(values))
        if values.get("grant_type") == "refresh_token":
            self.tokens.token_requests_arrived.release()
            self.tokens.token_gate.wait(10)
            return self.tokens.refresh({name: [value] for name, value in values.items()})
        if values.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type", "error_description": "grant_type is not supported"}
        if values.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client", "error_description": "Invalid client_id or client_secret"}
        with self.lock:
            issued = self.codes.pop(values.get("code", ""), None)  # a code is good once
        if issued is None:
            return 400, {"error": "invalid_grant", "error_description": "code doesn't exist or has expired"}
        if issued["redirect_uri"] != values.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        if "code_challenge" in issued:
            if not _pkce_matches(issued, values.get("code_verifier", "")):
                return 400, {"error": "invalid_grant", "error_description": "invalid code verifier"}
        elif values.get("client_secret") != self.client_secret:
            return 400, {"error": "invalid_client", "error_description": "Invalid client_id or client_secret"}
        grant = self.tokens.grant()
        answer = {
            "access_token": grant["access_token"],
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "scope": issued.get("scope", "files.content.write"),
            "uid": "12345",
            "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc",
        }
        if issued.get("token_access_type") == "offline":
            answer["refresh_token"] = grant["refresh_token"]
        return 200, answer

    def token_refusal(self, access_token: str) -> str | None:
        with self.tokens.lock:
            expiry = self.tokens.access_tokens.get(access_token)
        if expiry is None:
            return "invalid_access_token"
        return "expired_access_token" if expiry <= time.time() else None

    # The API routes.

    def failure_for(self, route: str) -> Failure | None:
        with self.lock:
            failure = next((failure for failure in self.failures if failure.route == route), None)
            if failure is not None:
                self.failures.remove(failure)
            return failure

    def call(self, route: str, arg: Any, body: bytes, access_token: str) -> Any:
        with self.lock:
            self.calls.append(route)
            if route == "auth/token/revoke":
                self.tokens.revoke(access_token)
                self.revoked.append(access_token)
                return None
            if route in CONTENT_ROUTES and arg.get("content_hash") and arg["content_hash"] != content_hash(body):
                raise ApiRefusal("content_hash_mismatch", {".tag": "content_hash_mismatch"})
            if route == "files/upload":
                return self._write(arg, body, lambda error: {".tag": "path", "reason": error, "upload_session_id": ""})
            if route == "files/upload_session/start":
                session_id = secrets.token_urlsafe(16)
                self.sessions[session_id] = UploadSession(bytearray(body))
                return {"session_id": session_id}
            if route == "files/upload_session/append_v2":
                self._session(arg["cursor"], lambda error: error).data += body
                return None
            if route == "files/upload_session/finish":
                session = self._session(arg["cursor"], lambda error: {".tag": "lookup_failed", "lookup_failed": error})
                del self.sessions[arg["cursor"]["session_id"]]
                data = bytes(session.data + body)
                return self._write(arg["commit"], data, lambda error: {".tag": "path", "path": error})
        raise KeyError(f"unknown route {route}")

    def _session(self, cursor: dict[str, Any], wrap) -> UploadSession:
        session = self.sessions.get(cursor["session_id"])
        if session is None:
            raise ApiRefusal("not_found", wrap({".tag": "not_found"}))
        if cursor["offset"] != len(session.data):
            error = {".tag": "incorrect_offset", "correct_offset": len(session.data)}
            raise ApiRefusal("incorrect_offset", wrap(error))
        return session

    def _write(self, commit: dict[str, Any], data: bytes, wrap) -> dict[str, Any]:
        """Commit `data` at `commit["path"]` as files/upload and upload_session/finish do."""
        path = commit["path"]
        mode = commit.get("mode", "add")
        mode = mode[".tag"] if isinstance(mode, dict) else mode

        def refuse(*tags: str) -> ApiRefusal:
            error: dict[str, Any] = {".tag": tags[-1]}
            for tag in reversed(tags[:-1]):
                error = {".tag": tag, tag: error}
            return ApiRefusal("path/" + "/".join(tags), wrap(error))

        if not path.startswith("/") or path.endswith("/") or "//" in path:
            raise refuse("malformed_path")
        segments = path.strip("/").split("/")
        for depth in range(1, len(segments)):
            ancestor = "/" + "/".join(segments[:depth])
            if ancestor.lower() in self.files:
                raise refuse("conflict", "file_ancestor")
        lower = path.lower()
        if lower in self.folders:
            raise refuse("conflict", "folder")
        if lower in self.files and mode != "overwrite":
            raise refuse("conflict", "file")
        for depth in range(1, len(segments)):
            ancestor = "/" + "/".join(segments[:depth])
            self.folders.setdefault(ancestor.lower(), ancestor)  # Dropbox makes the missing parents
        previous = self.files.get(lower)
        stored = StoredFile(
            path_display=previous.path_display if previous else path,
            data=data,
            id=previous.id if previous else f"id:{secrets.token_urlsafe(12)}",
            rev=secrets.token_hex(8) + "0",
        )
        self.files[lower] = stored
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {
            "name": segments[-1],
            "id": stored.id,
            "client_modified": now,
            "server_modified": now,
            "rev": stored.rev,
            "size": len(data),
            "path_lower": lower,
            "path_display": stored.path_display,
            "is_downloadable": True,
            "content_hash": content_hash(data),
        }

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def _pkce_matches(issued: dict[str, str], verifier: str) -> bool:
    """RFC 7636 §4.6."""
    if issued.get("code_challenge_method", "plain") == "plain":
        return secrets.compare_digest(verifier, issued["code_challenge"])
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return secrets.compare_digest(digest, issued["code_challenge"])


@pytest.fixture(scope="session")
def dropbox_server_session() -> Iterator[DropboxServer]:
    server = DropboxServer()
    yield server
    server.stop()


@pytest.fixture
def dropbox_server(dropbox_server_session, settings) -> DropboxServer:
    """The local Dropbox, emptied, with APERTUR_OAUTH["dropbox"] pointing at it."""
    dropbox_server_session.reset()
    settings.APERTUR_OAUTH = {**settings.APERTUR_OAUTH, "dropbox": dropbox_server_session.settings()}
    return dropbox_server_session
