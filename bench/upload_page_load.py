"""Benchmark: first load of the phone upload page on a throttled phone (docs/benchmarks.md "Phone upload page:
first load").

Starts the real site (bench/live_site.py), creates an open session through the API, then loads its upload page
--runs times in Debian's Chromium (a 390x844 touch phone), each time in a fresh browser context (empty cache, new
connections: a first visit), with Chrome DevTools' "Slow 4G" network emulation and --cpu-slowdown CPU throttling
through the DevTools protocol.

Time to interactive, here: from the navigation's start until the page can be used — its deferred script has run
(the HTML standard runs deferred scripts before DOMContentLoaded, so: DOMContentLoaded has finished) and the
"Take photo" / "Choose from gallery" pickers are on screen (the first contentful paint); the later of the two.

Page weight: the bytes the browser received for the HTML, CSS and JS (headers included, as served: neither the
page nor WhiteNoise's finder-served static files are compressed by the server by default) and what gzip -9 makes
of each body (what a compressing proxy or `collectstatic` with compression would send). The event stream the
script opens afterwards is not part of the load.

With --what-if-inlined it also loads a copy of the page with its CSS and JS inlined (one request instead of two in
a row), to show what that would change.

    .venv/bin/python bench/upload_page_load.py --runs 9 --what-if-inlined
    .venv/bin/python bench/upload_page_load.py --runs 9 --what-if-inlined --cpu-slowdown 1
"""

import argparse
import base64
import contextlib
import gzip
import hashlib
import json
import os
import platform
import re
import statistics
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_site import CHROMIUM, CHROMIUM_ARGUMENTS, PHONE, live_site

# Chrome DevTools' "Slow 4G" preset (renamed from "Fast 3G" in 2024), as ChromeDevTools/devtools-frontend
# front_end/core/sdk/NetworkManager.ts defines it: ~1.6 Mbps down, ~750 Kbps up, each x 0.9, and a 150 ms RTT
# x 3.75 applied per request (Lighthouse's `mobileSlow4G`, core/config/constants.js, uses the same numbers).
SLOW_4G = {
    "offline": False,
    "downloadThroughput": 1.6 * 1000 * 1000 / 8 * 0.9,  # 180,000 bytes/s
    "uploadThroughput": 750 * 1000 / 8 * 0.9,  # 84,375 bytes/s
    "latency": 150 * 3.75,  # 562.5 ms
}
# Lighthouse's mobile default pairs Slow 4G with a 4x CPU slowdown, its stand-in for a mid-range phone
# (`cpuSlowdownMultiplier: 4`, core/config/constants.js).
CPU_SLOWDOWN = 4
TARGET_INTERACTIVE_MS = 1500
TARGET_COMPRESSED_BYTES = 60 * 1024

TIMINGS = """() => {
  const navigation = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const arrived = (ending) => performance.getEntriesByType("resource").find(entry => entry.name.endsWith(ending));
  return {
    htmlArrived: navigation.responseEnd,
    cssArrived: arrived(".css")?.responseEnd,
    jsArrived: arrived(".js")?.responseEnd,
    domContentLoaded: navigation.domContentLoadedEventEnd,
    load: navigation.loadEventEnd,
    firstContentfulPaint: paint ? paint.startTime : null,
  };
}"""

WEIGHED = {"Document": "html", "Stylesheet": "css", "Script": "js"}


def interactive_ms(timings: dict) -> float:
    return max(timings["domContentLoaded"], timings["firstContentfulPaint"])


def load_once(browser, url: str, cpu_slowdown: float) -> tuple[dict, dict]:
    """One first visit: its timings (ms) and what was transferred per kind ({kind: (url, bytes)})."""
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", SLOW_4G)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu_slowdown})
        requests: dict[str, tuple[str, str]] = {}
        transferred: dict[str, tuple[str, int]] = {}
        cdp.on(
            "Network.responseReceived",
            lambda event: requests.__setitem__(event["requestId"], (event["type"], event["response"]["url"])),
        )

        def finished(event: dict) -> None:
            kind, address = requests.get(event["requestId"], ("", ""))
            if kind in WEIGHED:
                transferred[WEIGHED[kind]] = (address, int(event["encodedDataLength"]))

        cdp.on("Network.loadingFinished", finished)
        response = page.goto(url, wait_until="load")
        assert response.status == 200, response.status
        page.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length > 0")
        assert page.locator("#pickers").is_visible()
        timings = page.evaluate(TIMINGS)
        return timings, transferred
    finally:
        context.close()


@contextlib.contextmanager
def inlined_copy(html: bytes, css: bytes, js: bytes) -> Iterator[str]:
    """What if: the same page with its stylesheet and script inlined (one request instead of two in a row),
    allowed by a CSP that names their hashes rather than `unsafe-inline`. Served by a plain local server; its
    URL. The script runs at the end of <body>, where a deferred one would. Its later API calls are not measured."""

    def sha256(data: bytes) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode() + "'"

    page = re.sub(rb'<link rel="stylesheet" href="[^"]+">', lambda _: b"<style>" + css + b"</style>", html)
    page = re.sub(rb'<script src="[^"]+" defer></script>', b"", page)
    page = page.replace(b"</body>", b"<script>" + js + b"</script></body>")
    policy = (
        f"default-src 'none'; script-src {sha256(js)}; style-src {sha256(css)}; img-src 'self' blob: data:;"
        " connect-src 'self'"
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/u/inlined"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", policy)
            self.send_header("Content-Length", str(len(page) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/u/inlined"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu-slowdown", type=float, default=CPU_SLOWDOWN, help="1 = no CPU throttling")
    parser.add_argument(
        "--what-if-inlined", action="store_true", help="also load a copy with the CSS and JS inlined (see inlined_copy)"
    )
    options = parser.parse_args()

    import httpx
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    with live_site() as site, sync_playwright() as playwright:
        session = site.api.post("/upload-sessions", json={"long_polling": True, "max_images": 10}).json()
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGUMENTS)
        try:
            load_once(browser, session["upload_url"], 1)  # warm-up: the server's first request (templates, imports)
            runs = [load_once(browser, session["upload_url"], options.cpu_slowdown) for _ in range(options.runs)]
            # What gzip -9 makes of each body (the same bodies: the page's HTML differs only in its CSRF token).
            _, transferred = runs[-1]
            bodies = {kind: httpx.get(address).content for kind, (address, _) in transferred.items()}
            inlined_runs = []
            if options.what_if_inlined and {"css", "js"} <= bodies.keys():  # a page that still links its files
                with inlined_copy(bodies["html"], bodies["css"], bodies["js"]) as url:
                    inlined_runs = [load_once(browser, url, options.cpu_slowdown) for _ in range(options.runs)]
        finally:
            browser.close()

    interactive = [interactive_ms(timings) for timings, _ in runs]
    paints = [timings["firstContentfulPaint"] for timings, _ in runs if timings["firstContentfulPaint"] is not None]
    weight = {kind: size for kind, (_, size) in transferred.items()}
    compressed = {kind: len(gzip.compress(body, compresslevel=9)) for kind, body in bodies.items()}
    result = {
        "benchmark": "upload_page_load",
        "network": "Slow 4G (180,000 B/s down, 84,375 B/s up, 562.5 ms latency)",
        "cpu_slowdown": options.cpu_slowdown,
        "runs": options.runs,
        "interactive_ms_median": round(statistics.median(interactive)),
        "interactive_ms_max": round(max(interactive)),
        "first_contentful_paint_ms_median": round(statistics.median(paints)) if paints else None,
        "load_ms_median": round(statistics.median(timings["load"] for timings, _ in runs)),
        # Where the time goes: when each part had arrived (medians).
        **{
            f"{part}_arrived_ms_median": round(statistics.median(timings[f"{part}Arrived"] for timings, _ in runs))
            for part in ("html", "css", "js")
            if all(timings[f"{part}Arrived"] is not None for timings, _ in runs)  # inlined: no request of its own
        },
        "transferred_bytes": weight,
        "transferred_bytes_total": sum(weight.values()),
        "body_bytes": {kind: len(body) for kind, body in bodies.items()},
        "gzip_bytes": compressed,
        "gzip_bytes_total": sum(compressed.values()),
        **(
            {
                "inlined_interactive_ms_median": round(statistics.median(interactive_ms(t) for t, _ in inlined_runs)),
                "inlined_interactive_ms_max": round(max(interactive_ms(t) for t, _ in inlined_runs)),
            }
            if inlined_runs
            else {}
        ),
        "target_interactive_ms": TARGET_INTERACTIVE_MS,
        "target_compressed_bytes": TARGET_COMPRESSED_BYTES,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        # The browser's CPU throttling multiplies whatever else the machine is doing: say how busy it was.
        "load_average_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    for key, value in result.items():
        print(f"{key:34} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
