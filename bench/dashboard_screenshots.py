"""Screenshots of every dashboard page (docs/dashboard.md "Screenshots"; PNGs under docs/screenshots/dashboard/, named
`<page>.png`, at 1280x800, plus a few at a tablet's 820x1180 named `<page>-tablet.png`).

Starts the real site (bench/live_site.py: `manage.py apertur_run` with its worker, on a throwaway var dir) and a local
webhook receiver, fills a project through the API as a small business would have it after a week (destinations,
keys, sessions with delivered and failed photos, an event webhook), signs in through the sign-in page and visits every
page in Debian's Chromium. Each PNG is reduced to a 256-colour palette to stay small.

    .venv/bin/python bench/dashboard_screenshots.py
    .venv/bin/python bench/dashboard_screenshots.py --pages sessions,session
"""

import argparse
import io
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_site import CHROMIUM, CHROMIUM_ARGUMENTS, REPO, Site, live_site
from upload_page_screenshots import scene

OUT = REPO / "docs" / "screenshots" / "dashboard"
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1}
TABLET = {"viewport": {"width": 820, "height": 1180}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}
TABLET_PAGES = {"overview", "session"}


def start_receiver() -> str:
    """A receiver that takes every POST, except on /fail, which answers 503 (a destination that keeps failing)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503 if self.path.startswith("/fail") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def fill_project(site: Site, receiver_url: str) -> dict[str, str]:
    """A project as it looks after a week of use; returns the ids the page addresses need."""
    api, project = site.api, site.project_id
    hook = api.post(
        f"/projects/{project}/destinations",
        json={
            "type": "webhook",
            "name": "Claims backend",
            "config": {"url": f"{receiver_url}/hook", "secret": "s" * 24},
        },
    ).json()
    broken = api.post(
        f"/projects/{project}/destinations",
        json={
            "type": "webhook",
            "name": "Archive (old server)",
            "config": {"url": f"{receiver_url}/fail", "secret": "s" * 24},
        },
    ).json()
    api.post(
        f"/projects/{project}/keys",
        json={"label": "Mobile app", "env": "test", "maxImages": 20, "allowedDomains": ["app.example.com"]},
    )
    api.post(
        f"/projects/{project}/webhooks",
        json={"url": f"{receiver_url}/events", "topics": ["project.session.*", "project.upload.failed"]},
    )
    sessions = []
    for number, (label, destinations, photos) in enumerate(
        [
            ("Claim #4711 · kitchen", [hook["id"]], 3),
            ("Claim #4712 · roof", [hook["id"], broken["id"]], 2),
            ("Claim #4713 · car", [hook["id"]], 0),
        ]
    ):
        session = api.post(
            "/upload-sessions", json={"label": label, "destination_ids": destinations, "tags": ["claims"]}
        ).json()
        sessions.append(session["id"])
        for index in range(photos):
            data = scene(number + index, size=(800, 600))
            with httpx_client(site) as public:
                public.post(
                    f"/api/v1/upload/{session['id']}/images", files={"file": (f"photo-{index}.jpg", data, "image/jpeg")}
                ).raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until every delivery to the good receiver is done
        status = api.get(f"/upload-sessions/{sessions[0]}/delivery-status").json()
        if all(d["status"] == "delivered" for image in status["images"] for d in image["deliveries"]):
            break
        time.sleep(0.2)
    key = api.get(f"/projects/{project}/keys").json()[-1]
    webhook = api.get(f"/projects/{project}/webhooks").json()[0]
    return {
        "project": project,
        "session": sessions[0],
        "failing_session": sessions[1],
        "destination": hook["id"],
        "key": key["id"],
        "webhook": webhook["id"],
    }


def httpx_client(site: Site):
    import httpx

    return httpx.Client(base_url=site.base, timeout=60)


def pages(ids: dict[str, str]) -> dict[str, str]:
    project = f"/projects/{ids['project']}"
    return {
        "home": "/",
        "overview": project,
        "destinations": f"{project}/destinations",
        "destination-types": f"{project}/destinations/new",
        "destination-new-s3": f"{project}/destinations/new?type=s3",
        "destination-edit": f"{project}/destinations/{ids['destination']}/edit",
        "keys": f"{project}/keys",
        "key-edit": f"{project}/keys/{ids['key']}/edit",
        "sessions": f"{project}/sessions",
        "session-new": f"{project}/sessions/new",
        "session": f"{project}/sessions/{ids['session']}",
        "session-failing": f"{project}/sessions/{ids['failing_session']}",
        "session-edit": f"{project}/sessions/{ids['session']}/edit",
        "webhooks": f"{project}/webhooks",
        "webhook-deliveries": f"{project}/webhooks/{ids['webhook']}/deliveries",
        "members": f"{project}/members",
        "settings": f"{project}/settings",
        "two-factor": "/accounts/2fa/",
    }


def save(png: bytes, path: Path) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256)
    image.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", default="", help="comma-separated page names (default: every page)")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with live_site() as site:
        ids = fill_project(site, start_receiver())
        wanted = pages(ids)
        if options.pages:
            wanted = {name: path for name, path in wanted.items() if name in options.pages.split(",")}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGUMENTS)
            for name, settings in (("desktop", DESKTOP), ("tablet", TABLET)):
                context = browser.new_context(**settings)
                page = context.new_page()
                page.goto(f"{site.base}/accounts/login/")
                if name == "desktop" and (not options.pages or "sign-in" in options.pages):
                    save(page.screenshot(full_page=True), OUT / "sign-in.png")
                page.fill("input[name=login]", "bench@example.test")
                page.fill("input[name=password]", "bench-password")
                page.click("button[type=submit]")
                page.wait_for_url(f"{site.base}/")
                for page_name, path in wanted.items():
                    if name == "tablet" and page_name not in TABLET_PAGES:
                        continue
                    response = page.goto(f"{site.base}{path}")
                    if response is None or response.status >= 400:
                        print(f"{page_name}: {path} answered {response and response.status}; skipped")
                        continue
                    page.wait_for_load_state("networkidle")
                    suffix = "" if name == "desktop" else "-tablet"
                    save(page.screenshot(full_page=True), OUT / f"{page_name}{suffix}.png")
                    print(f"{page_name}{suffix}.png")
                context.close()
            browser.close()


if __name__ == "__main__":
    main()
