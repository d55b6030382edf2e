"""A local OAuth 2 provider with a tiny file API, for the OAuth backend base (refresh, rotation, reconnect).

Its token endpoint implements the refresh-token grant of RFC 6749 §6 (form body, JSON answer, `invalid_grant`
for an unknown or revoked refresh token) and can rotate refresh tokens as Box and Dropbox do. Its file API takes
`PUT /files/<path>` with a bearer token and answers 401 for an unknown or expired one.

With `serve=False` it is the token logic alone, for a provider's own server to build on (tests/servers/dropbox.py).
"""

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote


class OAuthProvider:
    def __init__(self, *, rotate_refresh_tokens: bool = True, expires_in: int = 3600, serve: bool = True) -> None:
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.expires_in = expires_in
        self.client_id, self.client_secret = "local-client", "local-client-secret"
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token → expiry (unix seconds)
        self.refresh_token_of: dict[str, str] = {}  # access token → the refresh token it was issued for
        self.files: dict[str, bytes] = {}
        self.failing_tokens: set[str] = set()  # uploads with these access tokens get a 500
        self.refreshes = 0
        self.lock = threading.Lock()
        # Hold token requests until released: lets a test line two refreshes up at once.
        self.token_gate = threading.Event()
        self.token_gate.set()
        self.token_requests_arrived = threading.Semaphore(0)  # released once per token request, at arrival
        if serve:
            self._serve()

    def _serve(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/token":
                    return self.answer(404, {"error": "not_found"})
                provider.token_requests_arrived.release()
                provider.token_gate.wait(10)
                self.answer(*provider.refresh(parse_qs(body.decode())))

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
            self.refresh_token_of[access] = refresh
        return {"access_token": access, "refresh_token": refresh, "expires_at": time.time() + expires_in}

    def revoke_everything(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def revoke(self, access_token: str) -> None:
        """Revoke a grant through one of its access tokens: the refresh token and every access token issued for it."""
        with self.lock:
            refresh = self.refresh_token_of.get(access_token)
            self.refresh_tokens.discard(refresh)
            for access in [access_token, *(a for a, r in self.refresh_token_of.items() if r == refresh)]:
                self.access_tokens.pop(access, None)

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
            if self.rotate_refresh_tokens:
                self.refresh_tokens.discard(value("refresh_token"))
                answer["refresh_token"] = secrets.token_urlsafe(16)
                self.refresh_tokens.add(answer["refresh_token"])
            self.refresh_token_of[access] = answer.get("refresh_token") or value("refresh_token")
        return 200, answer

    def stop(self) -> None:
        if not hasattr(self, "server"):
            return
        self.server.shutdown()
        self.server.server_close()
