"""A local OAuth 2 provider with a tiny file API, for the OAuth backend base (refresh, rotation, reconnect) and
the connect flow. `TokenIssuer` holds the token state and grants that provider servers share (this module's, and
the cloud drives' in tests/servers/); `OAuthProvider` serves them over HTTP:

- `GET /authorize` (RFC 6749 §4.1.1-4.1.2): checks the client id and the redirect URI against the registered
  ones, remembers the PKCE challenge (RFC 7636 §4.3, S256 only), and answers the way a provider does once the user
  consented: a 302 to the redirect URI with `code` and `state`; or, after `deny_next_authorization()`, with
  `error=access_denied`.
- `POST /token`: the authorization-code grant (RFC 6749 §4.1.3; a code is single use, bound to its redirect URI
  and, with PKCE, to the verifier whose S256 hash was the challenge) and the refresh-token grant (§6; form body,
  JSON answer, `invalid_grant` for an unknown or revoked refresh token), rotating refresh tokens as Box and
  Dropbox do.
- `POST /revoke` (RFC 7009): revokes the grant a token belongs to; 200 for an unknown token too.
- `PUT /files/<path>` with a bearer token, 401 for an unknown or expired one.
"""

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit


class TokenIssuer:
    """The token state of a local OAuth provider: access tokens with expiries, refresh tokens (rotated on use, as
    Box and Dropbox do, when `rotate_refresh_tokens`), authorisation codes, and the refresh-token grant of RFC 6749
    §6. Provider servers (this module's, tests/servers/box.py) answer their token endpoints from it."""

    def __init__(self, *, rotate_refresh_tokens: bool = True, expires_in: int = 3600) -> None:
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.expires_in = expires_in
        self.client_id, self.client_secret = "local-client", "local-client-secret"
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token → expiry (unix seconds)
        self.codes: dict[str, dict[str, str]] = {}  # authorisation code → what it was issued for
        self.grants: dict[str, str] = {}  # access or refresh token → the grant it belongs to
        self.refreshes = 0
        self.lock = threading.Lock()
        # Hold token requests until released: lets a test line two refreshes up at once.
        self.token_gate = threading.Event()
        self.token_gate.set()
        self.token_requests_arrived = threading.Semaphore(0)  # released once per token request, at arrival
        # Answers the token endpoint gives next instead of its own, in order: (status, JSON payload of any shape).
        self.canned_token_answers: list[tuple[int, Any]] = []

    def answer_next_token_request(self, status: int, payload: Any) -> None:
        """Make the next token request (code exchange or refresh) get `payload` as it is (bytes: the raw body): a
        hostile provider."""
        with self.lock:
            self.canned_token_answers.append((status, payload))

    def _canned_token_answer(self) -> tuple[int, Any] | None:
        with self.lock:
            return self.canned_token_answers.pop(0) if self.canned_token_answers else None

    def grant(self, *, access_expires_in: float | None = None) -> dict:
        """A token set as the connect flow would store it."""
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        expires_in = self.expires_in if access_expires_in is None else access_expires_in
        with self.lock:
            self.refresh_tokens.add(refresh)
            self.access_tokens[access] = time.time() + expires_in
            self.grants[access] = self.grants[refresh] = secrets.token_hex(8)
        return {"access_token": access, "refresh_token": refresh, "expires_at": time.time() + expires_in}

    def revoke_everything(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def revoke(self, token: str) -> None:
        """Revoke the grant `token` (an access or a refresh token) belongs to: every token issued for it (RFC 7009
        §2.1 allows it; Box does it)."""
        with self.lock:
            grant = self.grants.get(token)
            doomed = {token} | {other for other, owner in self.grants.items() if grant is not None and owner == grant}
            for revoked in doomed:
                self.refresh_tokens.discard(revoked)
                self.access_tokens.pop(revoked, None)

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return self.access_tokens.get(token, 0) > time.time()

    def refresh(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if canned := self._canned_token_answer():
            return canned
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
            grant = self.grants.get(value("refresh_token"), "")
            self.grants[access] = grant
            answer = {"access_token": access, "token_type": "bearer", "expires_in": self.expires_in}
            if self.rotate_refresh_tokens:
                self.refresh_tokens.discard(value("refresh_token"))
                answer["refresh_token"] = secrets.token_urlsafe(16)
                self.refresh_tokens.add(answer["refresh_token"])
                self.grants[answer["refresh_token"]] = grant
        return 200, answer

    def issue_code(self, **facts: str) -> str:
        """An authorisation code, as the provider's authorise page hands it to the redirect URI."""
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = facts
        return code

    def exchange_code(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        """The authorization_code grant (RFC 6749 §4.1.3): a code is good once, for the redirect URI it was
        issued for and, when it was issued with a PKCE challenge, with the verifier whose S256 hash that was
        (RFC 7636 §4.6)."""

        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if canned := self._canned_token_answer():
            return canned
        if (value("client_id"), value("client_secret")) != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        with self.lock:
            facts = self.codes.pop(value("code"), None)
        if facts is None or facts.get("redirect_uri", "") not in ("", value("redirect_uri")):
            return 400, {"error": "invalid_grant"}
        if facts.get("code_challenge") and s256(value("code_verifier")) != facts["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        token = self.grant()
        return 200, {
            "access_token": token["access_token"],
            "refresh_token": token["refresh_token"],
            "expires_in": self.expires_in,
            "token_type": "bearer",
        }


def s256(code_verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()


class OAuthProvider(TokenIssuer):
    def __init__(self, *, rotate_refresh_tokens: bool = True, expires_in: int = 3600) -> None:
        super().__init__(rotate_refresh_tokens=rotate_refresh_tokens, expires_in=expires_in)
        self.files: dict[str, bytes] = {}
        self.failing_tokens: set[str] = set()  # uploads with these access tokens get a 500
        self.redirect_uris: set[str] = set()  # registered by the test, as in a provider's app console
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.revoked: list[str] = []
        self.deny_next = False
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/authorize":
                    return self.answer(404, {"error": "not_found"})
                status, answer = provider.authorize({name: values[0] for name, values in parse_qs(url.query).items()})
                if status != 302:
                    return self.answer(status, answer)
                self.send_response(302)
                self.send_header("Location", answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qs(body.decode())
                if self.path == "/revoke":
                    return self.answer(*provider.revoke_request(form))
                if self.path != "/token":
                    return self.answer(404, {"error": "not_found"})
                provider.token_requests_arrived.release()
                provider.token_gate.wait(10)
                with provider.lock:
                    provider.token_requests.append({name: values[0] for name, values in form.items()})
                if (form.get("grant_type") or [""])[0] == "authorization_code":
                    return self.answer(*provider.exchange_code(form))
                self.answer(*provider.refresh(form))

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

            def answer(self, status: int, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
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

    def deny_next_authorization(self) -> None:
        """The next authorisation answers as if the user clicked "Cancel" on the consent screen."""
        self.deny_next = True

    def authorize(self, query: dict[str, str]) -> tuple[int, str | dict]:
        """A 302 to the redirect URI (its Location) or, for a request that must not be redirected, an error."""
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
            facts = {"redirect_uri": redirect_uri}
            if "code_challenge" in query:
                facts["code_challenge"] = query["code_challenge"]
            answer["code"] = self.issue_code(**facts)
        if "state" in query:
            answer["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return 302, f"{redirect_uri}{separator}{urlencode(answer)}"

    def revoke_request(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        """RFC 7009 §2: the client authenticates; an unknown token is answered 200 as well."""

        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if (value("client_id"), value("client_secret")) != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        self.revoke(value("token"))
        with self.lock:
            self.revoked.append(value("token"))
        return 200, {}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
