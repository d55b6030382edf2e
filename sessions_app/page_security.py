"""The upload page's response headers (docs/upload-page.md "Security").

A Content-Security-Policy that allows only the page's own script and style (inlined, each allowed by its hash: no
other inline code, nothing from another origin), and `frame-ancestors` from the creating key's `allowedDomains`: a
business that listed its domains can embed the page there and nowhere else; without a list the page may be embedded
anywhere, like the link itself may be shared anywhere.
"""

import re
from urllib.parse import urlsplit

from django.http import HttpResponse

from sessions_app.models import UploadSession
from sessions_app.page_assets import page_script, page_style

# A host name or a `*.` wildcard of one, as CSP's host-source allows: nothing that could end the directive.
HOST_SOURCE = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*")


def base_policy() -> tuple[str, ...]:
    """Nothing inline runs but the page's own style and script, each allowed by its hash (page_assets.py)."""
    return (
        "default-src 'none'",
        f"script-src 'self' {page_script().csp_source}",
        f"style-src 'self' {page_style().csp_source}",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    )


def frame_ancestors(allowed_domains: list[str]) -> str:
    """The `frame-ancestors` sources for a key's allowedDomains (host names or URLs, `*.example.com`)."""
    if not allowed_domains:
        return "*"
    sources = ["'self'"]
    for entry in allowed_domains:
        if not isinstance(entry, str):
            continue
        entry = entry.strip().lower()
        wildcard = entry.startswith("*.")
        host = entry[2:] if wildcard else entry
        host = urlsplit(host if "//" in host else f"//{host}").hostname or ""
        source = f"*.{host}" if wildcard else host
        if HOST_SOURCE.fullmatch(source):
            sources.append(f"{source}:*")  # any port, as allowedDomains matches hosts on any port
    return " ".join(sources)


def page_headers(response: HttpResponse, *, session: UploadSession | None) -> HttpResponse:
    allowed = session.api_key.allowed_domains if session is not None and session.api_key_id else []
    response["Content-Security-Policy"] = "; ".join((*base_policy(), f"frame-ancestors {frame_ancestors(allowed)}"))
    response["Referrer-Policy"] = "same-origin"
    response["X-Content-Type-Options"] = "nosniff"
    response["Permissions-Policy"] = "geolocation=(), microphone=(), payment=(), usb=()"
    return response
