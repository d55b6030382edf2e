"""ASGI entry point (uvicorn): Django, the endpoints that wait, and Socket.IO at /socket.io. Refuses request bodies
Django cannot bound before Django spools them."""

import asyncio
import json
import logging
import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apertur.settings")
django_application = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402 (after Django is set up)
from django.db import close_old_connections  # noqa: E402

from apertur import events, live_socket  # noqa: E402
from apertur.api.errors import reason_phrase  # noqa: E402
from apertur.api.waiting import waiting_handler  # noqa: E402
from apertur.errors import AppError  # noqa: E402
from apertur.request_logging import RedactTokens  # noqa: E402
from sessions_app.receiving import upload_precheck  # noqa: E402

# uvicorn configures its loggers before it imports this module, in every worker process.
logging.getLogger("uvicorn.access").addFilter(RedactTokens())

UPLOAD_PATH = re.compile(r"^/api/v1/upload/(?P<session_id>[^/]+)/images/?$")

MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def _hard_cap_bytes() -> int:
    return settings.APERTUR_MAX_IMAGE_SIZE_MB_CAP * 1024 * 1024 + MULTIPART_OVERHEAD_BYTES


async def _refuse(
    send, status: int, code: str, reason: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"message": message, "code": code, "statusCode": status, "error": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _precheck_upload(session_id: str, declared_length: int, encrypted: bool) -> AppError | None:
    close_old_connections()
    try:
        upload_precheck(session_id=session_id, declared_length=declared_length, encrypted=encrypted)
    except AppError as error:
        return error
    finally:
        close_old_connections()
    return None


def _body_with_idle_timeout(receive, send):
    """`receive`, except that a body which stops arriving for APERTUR_BODY_IDLE_TIMEOUT_SECONDS is answered 408
    and dropped (to Django it looks like a client that went away). After the body, messages pass as they come."""
    body_done = False

    async def bounded_receive():
        nonlocal body_done
        if body_done:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), settings.APERTUR_BODY_IDLE_TIMEOUT_SECONDS)
        except TimeoutError:
            body_done = True
            await _refuse(send, 408, "REQUEST_TIMEOUT", reason_phrase(408), "The request body stopped arriving.")
            return {"type": "http.disconnect"}
        body_done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return bounded_receive


async def _lifespan(receive, send) -> None:
    """Only shutdown matters: waiters answer at once. (`apertur.serving.Server` does this earlier, before uvicorn
    waits for open requests; this covers other ASGI servers.)"""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            events.shutdown()
            await live_socket.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def django_or_waiting(scope, receive, send):
    """Endpoints that wait (long polls, pollFrom, event streams) skip Django's middleware and its per-request
    thread (docs/deployment.md "Long polls and event streams")."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http" and await waiting_handler.serves(scope):
        await waiting_handler(scope, receive, send)
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close"})  # only Socket.IO speaks WebSocket here: refused (403)
    else:
        await django_application(scope, receive, send)


socketio_or_django = live_socket.asgi_application(django_or_waiting)


async def application(scope, receive, send):
    """Django's ASGI handler reads the whole body before any view runs, so bounds are set here first.

    A declared length over the server's hard cap is refused unread. An upload is checked against its session
    before its body is read (unknown, expired or closed session, a declared length over the session's limit), so
    nobody can make the server spool megabytes for a session that would refuse them. A chunked body has no
    declared length: uvicorn enforces a declared Content-Length, so with it required every body is bounded;
    Django's multipart parser needs it anyway. A body that stops arriving is dropped after an idle timeout.
    The same bounds hold for Socket.IO's polling requests, which python-socketio reads whole too.
    """
    if scope["type"] == "http":
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > _hard_cap_bytes():
            await _refuse(send, 413, "FILE_TOO_LARGE", reason_phrase(413), "The request body is too large.")
            return
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            await _refuse(
                send, 411, "LENGTH_REQUIRED", reason_phrase(411), "Send the body with a Content-Length header."
            )
            return
        upload = UPLOAD_PATH.match(scope["path"]) if scope["method"] == "POST" else None
        if upload is not None:
            encrypted = b"x-aptr-encrypted" in headers or headers.get(b"content-type", b"").startswith(
                b"application/json"
            )
            length = int(declared) if declared is not None and declared.isdigit() else 0
            error = await sync_to_async(_precheck_upload)(upload["session_id"], length, encrypted)
            if error is not None:
                await _refuse(send, error.status, error.code, reason_phrase(error.status), error.message, error.headers)
                return
        receive = _body_with_idle_timeout(receive, send)
    await socketio_or_django(scope, receive, send)
