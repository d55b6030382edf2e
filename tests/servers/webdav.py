"""Local WebDAV servers: wsgidav on cheroot, in a thread of the test process, on a free 127.0.0.1 port.

Two shapes, each started once per test session: the share at `/`, and the share below a Nextcloud-style prefix
(`/remote.php/dav/files/davuser`), so a destination URL carrying a path is exercised as Nextcloud users type it.
Basic authentication (davuser/davpass), property and lock managers on, and the directory browser on: wsgidav
answers GET/HEAD on a folder with 403 without it (the team's test-server notes).

A small WSGI layer in front of wsgidav records every request and, for the folders a test names, misbehaves on
purpose (see `Misbehaviour`): fail an upload half-way, read an upload slowly, answer with a fixed status.

wsgidav and cheroot come from pyproject's [test] extra (`make install-test`).
"""

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

USERNAME = "davuser"
PASSWORD = "davpass"
# A second account whose password is not Latin-1: Basic credentials must go out as UTF-8 (RFC 7617).
UTF8_USERNAME = "davutf8"
UTF8_PASSWORD = "pässwört-✓"
HOST_NAME = "localhost"
NEXTCLOUD_STYLE_PREFIX = "/remote.php/dav/files/davuser"
INSTALL_HINT = (
    "the WebDAV test servers need wsgidav and cheroot: run `make install-test` "
    "(or: pip install -c constraints.txt wsgidav==4.4.0 cheroot==11.1.2)"
)
SLOW_UPLOAD_BLOCK = 64 * 1024
SLOW_UPLOAD_PAUSE_SECONDS = 0.1


class Misbehaviour(Enum):
    CUT_UPLOAD = "cut"  # a PUT's body breaks off half-way: wsgidav keeps what it wrote and answers 500
    SLOW_UPLOAD = "slow"  # a PUT's body is read one block per SLOW_UPLOAD_PAUSE_SECONDS, until `behave()`
    ANSWER = "answer"  # requests answered with a fixed status, headers and body, before wsgidav sees them


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded, as wsgidav resolves it
    headers: dict[str, str]  # as sent, names in Title-Case
    status: int
    client_port: int  # one per TCP connection the client opened


@dataclass(frozen=True)
class _Rule:
    misbehaviour: Misbehaviour
    methods: frozenset[str]  # empty: every method
    status: int
    headers: dict[str, str]
    body: bytes


class _CutBody:
    """A request body that breaks off after `limit` bytes, as when the client's connection is lost."""

    def __init__(self, body: Any, limit: int) -> None:
        self.body, self.left = body, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("the test server cut the upload half-way")
        chunk = self.body.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(chunk)
        return chunk


class _SlowBody:
    """A request body read one block per pause for as long as `still_slow()`, then at full speed."""

    def __init__(self, body: Any, started: threading.Event, still_slow: Callable[[], bool]) -> None:
        self.body, self.started, self.still_slow = body, started, still_slow

    def read(self, size: int = -1) -> bytes:
        if not self.still_slow():
            return self.body.read(size)
        self.started.set()
        time.sleep(SLOW_UPLOAD_PAUSE_SECONDS)
        return self.body.read(SLOW_UPLOAD_BLOCK if size < 0 else min(size, SLOW_UPLOAD_BLOCK))


@dataclass
class WebdavServer:
    """A running wsgidav server: its share's URL, the folder on disk behind it, and what it was asked."""

    root: Path  # the share's folder on disk
    port: int
    prefix: str  # where the share is mounted: "" (at /) or NEXTCLOUD_STYLE_PREFIX
    scheme: str = "http"
    certificate: Path | None = None  # for https: the self-signed certificate to trust
    requests: list[RecordedRequest] = field(default_factory=list)
    slowed: threading.Event = field(default_factory=threading.Event)  # a slow upload has started
    _rules: dict[str, _Rule] = field(default_factory=dict)
    _stop: Callable[[], None] = lambda: None

    @property
    def share_url(self) -> str:
        """The share's root, as a user would type it (with its trailing slash)."""
        return f"{self.scheme}://{HOST_NAME}:{self.port}{self.prefix}/"

    def new_folder(self) -> tuple[str, Path]:
        """A fresh, empty folder in the share: (its URL, its folder on disk)."""
        name = f"dest-{uuid.uuid4().hex[:10]}"
        (self.root / name).mkdir()
        return f"{self.share_url}{name}/", self.root / name

    def config(self, url: str, **overrides: Any) -> dict[str, Any]:
        """A `webdav` destination config (docs/api.md "Destination types") for `url` on this server."""
        return {"url": url, "username": USERNAME, "password": PASSWORD, **overrides}

    def misbehave(
        self,
        url: str,
        misbehaviour: Misbehaviour,
        *,
        methods: frozenset[str] = frozenset(),
        status: int = 500,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        """Misbehave for requests below `url` (a folder of this server's share); only for `methods` if given."""
        self._rules[self._share_path(url)] = _Rule(misbehaviour, methods, status, headers or {}, body)

    def behave(self, url: str) -> None:
        self._rules.pop(self._share_path(url), None)

    def requests_below(self, url: str) -> list[RecordedRequest]:
        path = self._share_path(url)
        return [request for request in self.requests if request.path.startswith(path)]

    def _share_path(self, url: str) -> str:
        return unquote(url.removeprefix(f"{self.scheme}://{HOST_NAME}:{self.port}"))

    def _rule_for(self, path: str) -> _Rule | None:
        return next((rule for prefix, rule in self._rules.items() if path.startswith(prefix)), None)

    def wrap(self, app: Callable) -> Callable:
        """The recording, misbehaving WSGI layer in front of wsgidav."""

        def recording_app(environ: dict, start_response: Callable) -> Any:
            # PEP 3333 hands the path over as Latin-1 decoded bytes; the share's names are UTF-8.
            path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
            method = environ["REQUEST_METHOD"]
            headers = {
                key.removeprefix("HTTP_").replace("_", "-").title(): value
                for key, value in environ.items()
                if key.startswith("HTTP_") or key in {"CONTENT_LENGTH", "CONTENT_TYPE"}
            }

            def recording_start_response(status: str, response_headers: list, *args: Any) -> Any:
                self.requests.append(
                    RecordedRequest(method, path, headers, int(status.split()[0]), int(environ["REMOTE_PORT"]))
                )
                return start_response(status, response_headers, *args)

            rule = self._rule_for(path)
            if rule is not None and rule.methods and method not in rule.methods:
                rule = None
            if rule is not None and rule.misbehaviour is Misbehaviour.ANSWER:
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                recording_start_response(
                    f"{rule.status} Scripted", [*rule.headers.items(), ("Content-Type", "application/xml")]
                )
                return [rule.body]
            if rule is not None and method == "PUT":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                if rule.misbehaviour is Misbehaviour.CUT_UPLOAD:
                    environ["wsgi.input"] = _CutBody(environ["wsgi.input"], max(length // 2, 1))
                elif rule.misbehaviour is Misbehaviour.SLOW_UPLOAD:
                    environ["wsgi.input"] = _SlowBody(
                        environ["wsgi.input"], self.slowed, lambda: self._rule_for(path) is rule
                    )
            return app(environ, recording_start_response)

        return recording_app

    def stop(self) -> None:
        self._stop()


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included): relative path → bytes."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent) / name
            found[path.relative_to(folder).as_posix()] = path.read_bytes()
    return found


def start_webdav_server(
    directory: Path, *, prefix: str = "", certificate: tuple[Path, Path] | None = None
) -> WebdavServer:
    """wsgidav serving `directory`/share at `prefix` (or at / for ""), over TLS when given (certificate, key)."""
    try:
        from cheroot import wsgi
        from cheroot.ssl.builtin import BuiltinSSLAdapter
        from wsgidav.wsgidav_app import WsgiDAVApp
    except ImportError as error:
        pytest.fail(f"{INSTALL_HINT} ({error})")

    root = directory / "share"
    root.mkdir()
    app = WsgiDAVApp(
        {
            "host": "127.0.0.1",
            "provider_mapping": {prefix or "/": str(root)},
            "http_authenticator": {
                "domain_controller": None,  # the simple_dc below
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
            },
            "simple_dc": {
                "user_mapping": {"*": {USERNAME: {"password": PASSWORD}, UTF8_USERNAME: {"password": UTF8_PASSWORD}}}
            },
            "property_manager": True,
            "lock_storage": True,
            "dir_browser": {"enable": True},
            "verbose": 1,
            "logging": {"enable": False},
        }
    )
    server = WebdavServer(
        root=root,
        port=0,
        prefix=prefix,
        scheme="https" if certificate else "http",
        certificate=certificate[0] if certificate else None,
    )
    http_server = wsgi.Server(("127.0.0.1", 0), server.wrap(app), numthreads=8, server_name=HOST_NAME)
    if certificate:
        http_server.ssl_adapter = BuiltinSSLAdapter(str(certificate[0]), str(certificate[1]))
    http_server.prepare()  # binds: the free port is known from here on
    server.port = http_server.bind_addr[1]
    thread = threading.Thread(target=http_server.serve, daemon=True, name=f"webdav{prefix or '-root'}")
    thread.start()

    def stop() -> None:
        http_server.stop()
        thread.join(10)

    server._stop = stop
    return server


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory) -> Iterator[WebdavServer]:
    """The share at `/`."""
    server = start_webdav_server(tmp_path_factory.mktemp("webdav"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nextcloud_style_webdav_server(tmp_path_factory) -> Iterator[WebdavServer]:
    """The share below /remote.php/dav/files/davuser, as Nextcloud serves a user's files."""
    server = start_webdav_server(tmp_path_factory.mktemp("webdav-prefixed"), prefix=NEXTCLOUD_STYLE_PREFIX)
    yield server
    server.stop()
