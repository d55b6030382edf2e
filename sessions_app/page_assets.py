"""The upload page's style and script, inlined into the page (docs/upload-page.md "Security").

On a slow mobile connection each request costs about half a second of latency; fetched as files, the style and
the script would need a second round trip before the page is usable. Inlined, the page is one request. The
Content-Security-Policy still allows no inline code but these two: it names each by its SHA-256
(docs/benchmarks.md "Phone upload page: first load" has the numbers).
"""

import base64
import hashlib
from dataclasses import dataclass
from functools import cache

from django.contrib.staticfiles import finders
from django.utils.safestring import SafeString, mark_safe

STYLE_PATH = "upload/upload.css"
SCRIPT_PATH = "upload/upload.js"


@dataclass(frozen=True)
class InlineAsset:
    text: SafeString
    csp_source: str  # 'sha256-<base64>' for the Content-Security-Policy


@cache
def _load(path: str, closing_tag: str) -> InlineAsset:
    with open(finders.find(path), encoding="utf-8") as file:
        text = file.read()
    # The text ends its element early if it holds the closing tag; neither file does, and this keeps it so.
    if closing_tag in text.lower():
        raise ValueError(f"{path} must not contain {closing_tag}")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return InlineAsset(text=mark_safe(text), csp_source=f"'sha256-{digest}'")  # noqa: S308 (our own static file)


def page_style() -> InlineAsset:
    return _load(STYLE_PATH, "</style")


def page_script() -> InlineAsset:
    return _load(SCRIPT_PATH, "</script")
