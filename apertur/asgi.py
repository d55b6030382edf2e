"""ASGI entry point (uvicorn). Refuses request bodies Django cannot bound before Django spools them."""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apertur.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 (after Django is set up)

MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def _hard_cap_bytes() -> int:
    return settings.APERTUR_MAX_IMAGE_SIZE_MB_CAP * 1024 * 1024 + MULTIPART_OVERHEAD_BYTES


async def _refuse(send, status: int, code: str, reason: str, message: str) -> None:
    body = json.dumps({"message": message, "code": code, "statusCode": status, "error": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def application(scope, receive, send):
    """Django's ASGI handler reads the whole body before any view runs, so bounds are set here first.

    A declared length over the server's hard cap is refused unread (the per-session limit is enforced
    later, while the upload view parses). A chunked body has no declared length: uvicorn enforces a
    declared Content-Length, so with it required every body is bounded; Django's multipart parser needs
    it anyway.
    """
    if scope["type"] == "http":
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > _hard_cap_bytes():
            await _refuse(send, 413, "FILE_TOO_LARGE", "Request Entity Too Large", "The request body is too large.")
            return
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            await _refuse(
                send, 411, "LENGTH_REQUIRED", "Length Required", "Send the body with a Content-Length header."
            )
            return
    await django_application(scope, receive, send)
