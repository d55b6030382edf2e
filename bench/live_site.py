"""A live Apertur site for the phone upload page's scripts (bench/upload_page_screenshots.py,
bench/upload_page_load.py): `manage.py apertur_run` (web server and embedded worker) on a throwaway var dir and
database, as the other benchmarks start it, and Debian's Chromium as the browser tests drive it
(tests/e2e/conftest.py)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upload_and_deliver import free_port, migrate_and_bootstrap, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.e2e.chromium import CHROMIUM, CHROMIUM_ARGUMENTS  # noqa: E402, F401 (the browser tests' flags, used here and by the page benchmarks)

# A 390x844 touch phone (an iPhone 12-14's CSS viewport) at twice the pixels.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Mobile Safari/537.36"
    ),
}


@dataclass
class Site:
    base: str
    api: httpx.Client
    project_id: str
    environment: dict[str, str]

    def manage(self, *arguments: str) -> str:
        """Run a manage.py command against the site's database (the same var dir and DATABASE_URL)."""
        return subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=REPO,
            env=self.environment,
            check=True,
            capture_output=True,
            text=True,
        ).stdout


@contextlib.contextmanager
def live_site() -> Iterator[Site]:
    """The site on a free port, its bench project's API client; the server stopped and its var dir removed after."""
    if not CHROMIUM.exists():
        raise SystemExit("Chromium is missing: `make install-test` installs Debian's chromium package.")
    scratch = Path(tempfile.mkdtemp(prefix="apertur-page-"))
    port = free_port()
    environment = {
        **os.environ,
        "APERTUR_VAR_DIR": str(scratch),
        "APERTUR_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",  # the local webhook receiver
        "APERTUR_RATE_LIMIT_UPLOAD_PAGE": "100000",
        "APERTUR_RATE_LIMIT_SESSION_CREATE": "100000",
        "APERTUR_RATE_LIMIT_SESSION_READ": "100000",
        "APERTUR_LOG_LEVEL": "WARNING",
        "APERTUR_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    server = None
    try:
        credentials = migrate_and_bootstrap(environment)
        with (scratch / "server.log").open("wb") as logs:
            server = subprocess.Popen(
                [sys.executable, "manage.py", "apertur_run", "--port", str(port)],
                cwd=REPO,
                env=environment,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base)
        headers = {"Authorization": f"Bearer {credentials['api_key']}"}
        with httpx.Client(base_url=f"{base}/api/v1", headers=headers, timeout=60) as api:
            yield Site(base, api, credentials["project_id"], environment)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
