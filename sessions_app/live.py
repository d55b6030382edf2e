"""What live-event clients are told (docs/api.md "Live events"): the bus's session events in the names and shapes
the official clients listen for, the same for Server-Sent Events and Socket.IO."""

import json
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from apertur import events
from apertur.api.waiting import StreamResponse
from apertur.events import Event
from sessions_app.models import UploadSession
from sessions_app.status import SessionEvent, displayed_status

Status = UploadSession.Status
# A session in one of these has ended: nothing more will happen to it unless a delivery is retried by hand.
ENDED = frozenset({Status.COMPLETED, Status.FAILED, Status.EXPIRED})


def client_events(event: Event) -> list[tuple[str, dict[str, Any]]]:
    """The (name, data) pairs an event becomes, in order; an empty list for changes clients are not told of."""
    data = event.data
    told: list[tuple[str, dict[str, Any]]] = []
    if event.name == SessionEvent.IMAGE_ACCEPTED:
        told.append(
            (
                "image:ready",
                {
                    "imageId": data["image_id"],
                    "imageIndex": data["index"],
                    "filename": data["filename"],
                    "sizeBytes": data["size_bytes"],
                    "mimeType": data["mime_type"],
                },
            )
        )
    elif event.name == SessionEvent.DELIVERY_STARTED:
        told.append(
            (
                "image:delivering",
                {"imageId": data["image_id"], "destinationId": data["destination_id"], "attempt": data["attempt"]},
            )
        )
    elif event.name == SessionEvent.DELIVERY_DELIVERED:
        told.append(
            (
                "image:delivered",
                {
                    "imageId": data["image_id"],
                    "destinationId": data["destination_id"],
                    "destinationType": data["destination_type"],
                },
            )
        )
    elif event.name == SessionEvent.DELIVERY_FAILED:
        told.append(
            (
                "image:failed",
                {
                    "imageId": data["image_id"],
                    "destinationId": data["destination_id"],
                    "error": data["error"],
                    "final": data["final"],
                },
            )
        )
    if session_ended(event):
        told.append(("session:completed", {"sessionId": event.session_id, "status": data["status"]}))
    return told


# The changes that can end a session: only they say `session:completed` (an acknowledgement or a settings change on
# an ended session leaves it ended, and must not say so again).
ENDING = frozenset({SessionEvent.SESSION_CLOSED, SessionEvent.DELIVERY_DELIVERED, SessionEvent.DELIVERY_FAILED})


def session_ended(event: Event) -> bool:
    return event.name in ENDING and event.data.get("status") in ENDED


# --- Server-Sent Events ---------------------------------------------------------------------------------------


def sse_frame(name: str, data: dict[str, Any], *, event_id: str | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id else []
    lines += [f"event: {name}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return ("\n".join(lines) + "\n\n").encode()


HEARTBEAT = b": heartbeat\n\n"


def event_stream_response(request: HttpRequest, session: UploadSession) -> HttpResponseBase:
    """The event stream of a session the caller may see (docs/api.md "Server-Sent Events").

    A reconnect names the last event it got (`Last-Event-ID`, or `lastEventId` in the query for clients that cannot
    set headers) and gets what it missed. A first connection starts from the newest event now, read before the
    stream's coroutine attaches, so nothing published in between is lost.
    """
    resumed_from = request.headers.get("Last-Event-ID") or request.GET.get("lastEventId")
    if resumed_from is not None and not events.is_valid_event_id(resumed_from):
        resumed_from = None
    latest = events.latest_id(session.pk)
    after = resumed_from or latest
    ended = displayed_status(session) in ENDED
    if ended and resumed_from is not None and events.event_id_key(resumed_from) >= events.event_id_key(latest):
        # A reconnect to an ended session that missed nothing: 204 tells EventSource to stop reconnecting.
        return HttpResponse(status=204)
    return StreamResponse(
        lambda: _event_stream(session.pk, after=after, ended_status=displayed_status(session) if ended else None),
        content_type="text/event-stream",
    )


async def _event_stream(session_id: str, *, after: str, ended_status: str | None) -> AsyncIterator[bytes]:
    async with events.listen(session_id, after=after) as listener:
        yield b"retry: 3000\n" + sse_frame("connected", {"sessionId": session_id})
        if ended_status is not None:
            for event in listener.pending():
                for name, data in client_events(event):
                    yield sse_frame(name, data, event_id=event.id)
            yield sse_frame("session:completed", {"sessionId": session_id, "status": ended_status})
            return
        while True:
            event = await listener.next(settings.APERTUR_SSE_HEARTBEAT_SECONDS)
            if listener.closing:
                return
            if event is None:
                yield HEARTBEAT
                continue
            for name, data in client_events(event):
                yield sse_frame(name, data, event_id=event.id)
            if session_ended(event):
                return
