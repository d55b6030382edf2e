"""Screenshots of the phone upload page in every state, light and dark, English and French
(docs/upload-page.md "Screenshots"; PNGs under docs/screenshots/upload-page/, named `<state>-<scheme>-<lang>.png`).

Starts the real site (bench/live_site.py: `manage.py apertur_run` on a throwaway var dir) and a local webhook
receiver, creates sessions through the API and drives Debian's Chromium through Playwright in a 390x844 touch phone
(device scale factor 2). The phone's colour scheme and language are the browser context's (`prefers-color-scheme`,
`Accept-Language`), as a real phone sends them. Each PNG is reduced to a 256-colour palette to stay small.

    .venv/bin/python bench/upload_page_screenshots.py
    .venv/bin/python bench/upload_page_screenshots.py --states sent,error --schemes dark --languages fr
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_site import CHROMIUM, CHROMIUM_ARGUMENTS, PHONE, REPO, Site, live_site
from upload_and_deliver import Receiver

STATES = ["gate", "empty", "uploading", "sent", "error", "full", "finished", "done", "expired"]
LOCALES = {"en": "en-GB", "fr": "fr-FR"}
LABEL = "Claim 4821 · kitchen"


def scene(seed: int, size: tuple[int, int] = (1200, 900), grain: int = 0) -> bytes:
    """A JPEG that looks like a photo in a thumbnail (sky, ground, a sun); `grain` adds noise so that it weighs
    what a phone photo weighs (for the "uploading" state)."""
    skies = [(92, 148, 214), (236, 160, 96), (120, 190, 200), (180, 150, 210)]
    grounds = [(70, 120, 60), (150, 110, 70), (60, 90, 120), (110, 130, 80)]
    sky, ground = skies[seed % len(skies)], grounds[seed % len(grounds)]
    width, height = size
    image = Image.new("RGB", size, sky)
    draw = ImageDraw.Draw(image)
    for row in range(height // 2):
        shade = tuple(int(channel * (0.75 + 0.5 * row / height)) for channel in sky)
        draw.line([(0, row), (width, row)], fill=shade)
    draw.polygon(
        [(0, height * 0.55), (width * 0.4, height * 0.4), (width, height * 0.6), (width, height), (0, height)],
        fill=ground,
    )
    sun = (width * (0.2 + 0.15 * seed), height * 0.2)
    draw.ellipse([sun[0] - 70, sun[1] - 70, sun[0] + 70, sun[1] + 70], fill=(255, 236, 170))
    image = image.filter(ImageFilter.GaussianBlur(2))
    if grain:
        noise = Image.effect_noise(size, grain).convert("RGB")
        image = Image.blend(image, noise, 0.25)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def photo(name: str, data: bytes, mime_type: str = "image/jpeg") -> dict:
    return {"name": name, "mimeType": mime_type, "buffer": data}


def photos(*names: str, grain: int = 0, size=(1200, 900)) -> list[dict]:
    return [photo(name, scene(index, size, grain)) for index, name in enumerate(names)]


class Shots:
    """One browser context per (colour scheme, language); one session per state."""

    def __init__(self, site: Site, receiver: Receiver, browser, output: Path) -> None:
        self.site = site
        self.browser = browser
        self.output = output
        destination = site.api.post(
            f"/projects/{site.project_id}/destinations",
            json={"type": "webhook", "name": "claims desk", "config": {"url": receiver.url, "secret": "shots-secret"}},
        )
        destination.raise_for_status()
        self.destination_id = destination.json()["id"]
        self.saved: list[Path] = []

    def session(self, **body) -> dict:
        body = {"destination_ids": [self.destination_id], "label": LABEL, **body}
        response = self.site.api.post("/upload-sessions", json=body)
        response.raise_for_status()
        return response.json()

    def take(self, state: str, scheme: str, language: str) -> None:
        context = self.browser.new_context(**PHONE, color_scheme=scheme, locale=LOCALES[language])
        context.set_default_timeout(30_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            getattr(self, f"state_{state}")(page)
            page.evaluate("document.fonts.ready")
            path = self.output / f"{state}-{scheme}-{language}.png"
            small_png(page.screenshot(full_page=True, animations="disabled", caret="hide"), path)
            self.saved.append(path)
            print(f"{path}  {path.stat().st_size // 1024} KB", flush=True)
        finally:
            context.close()
        if problems:
            raise SystemExit(f"{state}-{scheme}-{language}: script errors on the page: {problems}")

    # --- the states -----------------------------------------------------------------------------------------
    def state_gate(self, page) -> None:
        page.goto(self.session(password="open-sesame")["upload_url"])
        page.locator("#password").wait_for()

    def state_empty(self, page) -> None:
        page.goto(self.session(max_images=10)["upload_url"])
        page.locator("#pickers").wait_for()

    def state_uploading(self, page) -> None:
        """Four photos of ~1.5 MB over a slow uplink (CDP network emulation): three are sent at once, each with
        its progress, the fourth waits its turn."""
        page.goto(self.session(max_images=10)["upload_url"])
        page.locator("#pickers").wait_for()
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 100, "downloadThroughput": 200_000, "uploadThroughput": 60_000},
        )
        names = ("IMG_2041.jpg", "IMG_2042.jpg", "IMG_2043.jpg", "IMG_2044.jpg")
        page.locator("#gallery-input").set_input_files(photos(*names, grain=60, size=(2000, 1500)))
        # Sending, and far enough along that the bars show it.
        page.wait_for_function(
            """() => {
              const bars = [...document.querySelectorAll('#files li[data-state="uploading"] progress')];
              return bars.length === 3 && bars.every(bar => bar.value >= 25);
            }""",
            timeout=120_000,
        )

    def state_sent(self, page) -> None:
        page.goto(self.session(max_images=10)["upload_url"])
        page.locator("#gallery-input").set_input_files(photos("IMG_2041.jpg", "IMG_2042.jpg", "IMG_2043.jpg"))
        page.locator('#files li[data-state="sent"]').nth(2).wait_for()

    def state_error(self, page) -> None:
        session = self.session(max_images=10)
        self.site.api.patch(f"/upload-sessions/{session['id']}", json={"max_image_size_mb": 1}).raise_for_status()
        page.goto(session["upload_url"])
        page.locator("#gallery-input").set_input_files(
            [
                photo("IMG_2041.jpg", scene(0)),
                photo("notes.jpg", b"a text file, not a photo\n" * 40),
                photo("IMG_2042.jpg", scene(1, (3000, 2250), grain=80)),  # over the 1 MB limit
            ]
        )
        page.locator('#files li[data-state="sent"]').wait_for()
        page.locator('#files li[data-state="error"]').nth(1).wait_for()

    def state_full(self, page) -> None:
        """The session's last photo fills it: the page thanks the user, and the photo beyond the limit is refused
        without being sent."""
        page.goto(self.session(max_images=2)["upload_url"])
        page.locator("#gallery-input").set_input_files(photos("IMG_2041.jpg", "IMG_2042.jpg", "IMG_2043.jpg"))
        page.locator("#page-notice.notice-ok").wait_for()
        page.locator('#files li[data-state="sent"]').nth(1).wait_for()

    def state_finished(self, page) -> None:
        """Opening the link of a session that is full (or was completed): the 409 page."""
        session = self.session(max_images=1)
        self.upload(session, "IMG_2041.jpg")
        response = page.goto(session["upload_url"])
        assert response.status == 409, response.status

    def state_done(self, page) -> None:
        page.goto(self.session(max_images=10)["upload_url"])
        page.locator("#gallery-input").set_input_files(photos("IMG_2041.jpg", "IMG_2042.jpg"))
        page.locator('#files li[data-state="sent"]').nth(1).wait_for()
        page.locator("#done-button").click()
        page.locator("#page-notice.notice-ok").wait_for()

    def state_expired(self, page) -> None:
        """A session past its expiry (moved into the past through the ORM: the API only moves it forward)."""
        session = self.session(max_images=10, expires_in_hours=1)
        self.upload(session, "IMG_2041.jpg")
        self.upload(session, "IMG_2042.jpg")
        self.site.manage(
            "shell",
            "-c",
            "from datetime import timedelta; from django.utils import timezone;"
            " from sessions_app.models import UploadSession;"
            f" UploadSession.objects.filter(pk={json.dumps(session['id'])})"
            ".update(expires_at=timezone.now() - timedelta(minutes=5))",
        )
        response = page.goto(session["upload_url"])
        assert response.status == 410, response.status

    def upload(self, session: dict, name: str) -> None:
        response = self.site.api.post(
            f"/upload/{session['id']}/images", files={"file": (name, scene(len(name)), "image/jpeg")}
        )
        response.raise_for_status()


def small_png(data: bytes, path: Path) -> None:
    """A 256-colour palette PNG: a screenshot of flat colours and text loses nothing visible and weighs a third."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--states", default=",".join(STATES), help=f"comma-separated, of: {', '.join(STATES)}")
    parser.add_argument("--schemes", default="light,dark")
    parser.add_argument("--languages", default="en,fr")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "screenshots" / "upload-page")
    options = parser.parse_args()
    options.output.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    receiver = Receiver()
    try:
        with live_site() as site, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGUMENTS)
            try:
                shots = Shots(site, receiver, browser, options.output)
                for language in options.languages.split(","):
                    for scheme in options.schemes.split(","):
                        for state in options.states.split(","):
                            shots.take(state, scheme, language)
            finally:
                browser.close()
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    result = {
        "benchmark": "upload_page_screenshots",
        "screenshots": len(shots.saved),
        "kilobytes": sum(path.stat().st_size for path in shots.saved) // 1024,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
