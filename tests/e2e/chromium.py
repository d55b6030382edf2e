"""Debian's Chromium as the browser tests and the page benchmarks (bench/live_site.py) drive it: Playwright cannot
download its own browser here. No sandbox (root in a container), no GPU, nothing fetched in the background."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGUMENTS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
