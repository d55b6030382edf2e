"""A local OAuth 2 provider with a tiny file API, for the OAuth backend base (refresh, rotation, reconnect) and
the connect flow.

- `GET /authorize` (RFC 6749 §4.1.1-4.1.2): checks the client id, `response_type=code` and the redirect URI
  against the registered ones, remembers the PKCE challenge (RFC 7636 §4.3, S256 only), and answers the way a
  provider does once the user consented: a 302 to the redirect URI with `code` and `state`; or, after
  `deny_next_authorization()`, with `error=access_denied`.
- `POST /token`: the authorization-code grant (RFC 6749 §4.1.3; a code is single use, bound to its redirect URI
  and, with PKCE, to the verifier whose S256 hash was the challenge) and the refresh-token grant (§6; form body,
  JSON answer, `invalid_grant` for an unknown or revoked refresh token), rotating refresh tokens as Box and
  Dropbox do.
- `POST /revoke` (RFC 7009): revokes a refresh token (and the access tokens issued with it) or an access token;
  200 for an unknown token too.
- `PUT /files/<path>` with a bearer token, 401 for an unknown or expired one.
"""

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

CODE_LIFETIME_SECONDS = 60


@dataclass
class IssuedCode:
    redirect_uri: str
    code_challenge: str | None
    expires_at: float


class OAuthProvider:
    def __init__(self, *, rotate_refresh_tokens: bool = True, expires_in: int = 3600) -> None:
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.expires_in = expires_in
        self.client_id, self.client_secret = "local-client", "local-client-secret"
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token → expiry (unix seconds)
        self.files: dict[str, bytes] = {}
        self.failing_tokens: set[str] = set()  # uploads with these access tokens get a 500
        self.refreshes = 0
        self.redirect_uris: set[str] = set()  # registered by the test, as in a provider's app console
        self.codes: dict[str, IssuedCode] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.revoked: list[str] = []
        self.deny_next = False
        self.access_of_refresh: dict[str, set[str]] = {}  # refresh token → the access tokens issued with it
        self.lock = threading.Lock()
        # Hold token requests until released: lets a test line two refreshes up at once.
        self.token_gate = threading.Event()
        self.token_gate.set()
        self.token_requests_arrived = threading.Semaphore(0)  # released once per token request, at arrival
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/authorize":
                    return self.answer(404, {"error": "not_found"})
                status, location_or_error = provider.authorize({k: v[0] for k, v in parse_qs(url.query).items()})
                if status != 302:
                    return self.answer(status, location_or_error)
                self.send_response(302)
                self.send_header("Location", location_or_error)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qs(body.decode())
                if self.path == "/revoke":
                    return self.answer(*provider.revoke(form))
                if self.path != "/token":
                    return self.answer(404, {"error": "not_found"})
                provider.token_requests_arrived.release()
                provider.token_gate.wait(10)
                self.answer(*provider.token(form))

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if not provider.token_valid(token):
                    return self.answer(401, {"error": "invalid_token"})
                path = unquote(self.path.removeprefix("/files/"))
                if token in provider.failing_tokens:
                    return self.answer(500, {"error": "server_error"})
                with provider.lock:
                    provider.files[path] = body
                self.answer(200, {"path": path})

            def answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def grant(self, *, access_expires_in: float | None = None) -> dict:
        """A token set as the connect flow would store it."""
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        expires_in = self.expires_in if access_expires_in is None else access_expires_in
        with self.lock:
            self.refresh_tokens.add(refresh)
            self.access_tokens[access] = time.time() + expires_in
            self.access_of_refresh[refresh] = {access}
        return {"access_token": access, "refresh_token": refresh, "expires_at": time.time() + expires_in}

    def deny_next_authorization(self) -> None:
        """The next authorisation answers as if the user clicked "Cancel" on the consent screen."""
        self.deny_next = True

    def authorize(self, query: dict[str, str]) -> tuple[int, str | dict]:
        with self.lock:
            self.authorize_requests.append(query)
        # RFC 6749 §4.1.2.1: a bad client id or redirect URI is shown to the user, never redirected to.
        if query.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client"}
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:
            return 400, {"error": "invalid_request", "error_description": "redirect_uri is not registered"}
        answer: dict[str, str] = {}
        if self.deny_next:
            self.deny_next = False
            answer["error"] = "access_denied"
        elif query.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif "code_challenge" in query and query.get("code_challenge_method") != "S256":
            answer["error"] = "invalid_request"
        else:
            answer["code"] = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[answer["code"]] = IssuedCode(
                    redirect_uri, query.get("code_challenge"), time.time() + CODE_LIFETIME_SECONDS
                )
        if "state" in query:
            answer["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return 302, f"{redirect_uri}{separator}{urlencode(answer)}"

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        with self.lock:
            self.token_requests.append({name: values[0] for name, values in form.items()})
        grant_type = (form.get("grant_type") or [""])[0]
        if grant_type == "authorization_code":
            return self.exchange(form)
        return self.refresh(form)

    def exchange(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if (value("client_id"), value("client_secret")) != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        with self.lock:
            issued = self.codes.pop(value("code"), None)  # single use, whatever the outcome
        if issued is None or issued.expires_at < time.time() or issued.redirect_uri != value("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        if issued.code_challenge is not None:
            verifier = value("code_verifier").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if not verifier or challenge != issued.code_challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        token = self.grant()
        return 200, {
            "access_token": token["access_token"],
            "refresh_token": token["refresh_token"],
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }

    def revoke(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        token = (form.get("token") or [""])[0]
        if ((form.get("client_id") or [""])[0], (form.get("client_secret") or [""])[0]) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {"error": "invalid_client"}
        with self.lock:
            self.revoked.append(token)
            self.refresh_tokens.discard(token)
            for access in self.access_of_refresh.pop(token, {token}):
                self.access_tokens.pop(access, None)
        return 200, {}

    def revoke_everything(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return self.access_tokens.get(token, 0) > time.time()

    def refresh(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if (value("client_id"), value("client_secret")) != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        if value("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            if value("refresh_token") not in self.refresh_tokens:
                return 400, {"error": "invalid_grant"}
            self.refreshes += 1
            access = secrets.token_urlsafe(16)
            self.access_tokens[access] = time.time() + self.expires_in
            answer = {"access_token": access, "token_type": "bearer", "expires_in": self.expires_in}
            issued_with = self.access_of_refresh.pop(value("refresh_token"), set()) | {access}
            if self.rotate_refresh_tokens:
                self.refresh_tokens.discard(value("refresh_token"))
                answer["refresh_token"] = secrets.token_urlsafe(16)
                self.refresh_tokens.add(answer["refresh_token"])
            self.access_of_refresh[answer.get("refresh_token", value("refresh_token"))] = issued_with
        return 200, answer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
