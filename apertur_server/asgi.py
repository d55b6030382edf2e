"""ASGI entry point (uvicorn). Refuses upload bodies beyond the server's hard cap before Django spools them."""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apertur_server.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 (after Django is set up)

MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def _hard_cap_bytes() -> int:
    return settings.APERTUR_MAX_IMAGE_SIZE_MB_CAP * 1024 * 1024 + MULTIPART_OVERHEAD_BYTES


async def application(scope, receive, send):
    """Django's ASGI handler reads the whole body before any view runs; this stops a huge one early.

    The per-session limit is enforced by the upload view while it parses; this is the outer bound.
    """
    if scope["type"] == "http" and scope["method"] == "POST":
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > _hard_cap_bytes():
            body = json.dumps(
                {
                    "message": "The request body is too large.",
                    "code": "FILE_TOO_LARGE",
                    "statusCode": 413,
                    "error": "Request Entity Too Large",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        receive = _bounded(receive, _hard_cap_bytes())
    await django_application(scope, receive, send)


def _bounded(receive, limit: int):
    received = 0

    async def bounded_receive():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # A chunked body past the cap: end the request as if the client left.
                return {"type": "http.disconnect"}
        return message

    return bounded_receive
