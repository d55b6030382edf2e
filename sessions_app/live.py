"""What live-event clients are told (docs/api.md "Live events"): the bus's session events in the names and shapes
the official clients listen for, the same for Server-Sent Events and Socket.IO."""

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from apertur import events
from apertur.api.waiting import StreamResponse, db
from apertur.errors import AppError
from apertur.events import Event
from sessions_app.models import UploadSession
from sessions_app.status import SessionEvent, displayed_status

# What anonymous watchers (the phone page, anyone holding the session id) are told of a failed attempt: a
# destination's own error names hosts, paths and servers of the business, which only key holders may read (in the
# delivery status and the keyed event stream).
ANONYMOUS_FAILURE = {False: "The delivery failed; it will be tried again.", True: "The delivery failed."}


def client_events(event: Event, *, anonymous: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """The (name, data) pairs an event becomes, in order; an empty list for changes clients are not told of.
    `anonymous`: for watchers without a key (failure details withheld)."""
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
                    "error": ANONYMOUS_FAILURE[bool(data["final"])] if anonymous else data["error"],
                    "final": data["final"],
                },
            )
        )
    if session_ended(event):
        told.append(("session:completed", {"sessionId": event.session_id, "status": data["status"]}))
    return told


def session_ended(event: Event) -> bool:
    """Whether this change ended the session (`session_changed` says so once, when it happens)."""
    return bool(event.data.get("ended"))


# --- Server-Sent Events ---------------------------------------------------------------------------------------


def sse_frame(name: str, data: dict[str, Any], *, event_id: str | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id else []
    lines += [f"event: {name}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return ("\n".join(lines) + "\n\n").encode()


HEARTBEAT = b": heartbeat\n\n"


def event_stream_response(
    request: HttpRequest,
    session: UploadSession,
    *,
    anonymous: bool,
    still_allowed: Callable[[], bool] | None = None,
) -> HttpResponseBase:
    """The event stream of a session the caller may see (docs/api.md "Server-Sent Events").

    A reconnect names the last event it got (`Last-Event-ID`, or `lastEventId` in the query for clients that cannot
    set headers) and gets what it missed. A first connection starts from the newest event now, read before the
    stream's coroutine attaches, so nothing published in between is lost.

    `still_allowed` (for a key's or a signed-in user's stream) is asked again every APERTUR_SSE_RECHECK_SECONDS:
    a stream outlives the request that opened it by hours, and a revoked key, a signed-out browser or a removed
    member must stop hearing the session. The stream then ends; a reconnect is refused like any request.
    """
    resumed_from = request.headers.get("Last-Event-ID") or request.GET.get("lastEventId")
    if resumed_from is not None and not events.is_valid_event_id(resumed_from):
        resumed_from = None
    ended_ms = int(session.ended_at.timestamp() * 1000) if session.ended_at is not None else None
    if ended_ms is not None and resumed_from is not None and events.event_id_key(resumed_from)[0] >= ended_ms:
        # A reconnect that saw the end already: 204 tells EventSource to stop reconnecting.
        return HttpResponse(status=204)
    if request.method == "HEAD":
        return HttpResponse(content_type="text/event-stream")
    try:
        latest = events.latest_id(session.pk)
    except events.EventBusUnavailable as error:
        raise AppError(503, "EVENTS_UNAVAILABLE", "Live updates are unavailable right now; try again.") from error
    ending = None
    if ended_ms is not None:
        # The end, told with an id at or after it: a reconnect with that id is answered 204.
        final_id = max(latest, f"{ended_ms}-0", key=events.event_id_key)
        ending = (final_id, displayed_status(session))
    return StreamResponse(
        lambda: _event_stream(
            session.pk, after=resumed_from or latest, ending=ending, anonymous=anonymous, still_allowed=still_allowed
        ),
        content_type="text/event-stream",
    )


def _frames(event: Event, *, anonymous: bool) -> list[bytes]:
    return [sse_frame(name, data, event_id=event.id) for name, data in client_events(event, anonymous=anonymous)]


def _password_changed(event: Event) -> bool:
    return event.name == SessionEvent.SESSION_UPDATED and "password" in event.data.get("fields", ())


async def _event_stream(
    session_id: str,
    *,
    after: str,
    ending: tuple[str, str] | None,
    anonymous: bool,
    still_allowed: Callable[[], bool] | None = None,
) -> AsyncIterator[bytes]:
    async with events.listen(session_id, after=after) as listener:
        yield b"retry: 3000\n" + sse_frame("connected", {"sessionId": session_id})
        if ending is not None:
            told_end = False
            for event in listener.pending():
                for frame in _frames(event, anonymous=anonymous):
                    yield frame
                told_end = told_end or session_ended(event)
            if not told_end:
                final_id, status = ending
                yield sse_frame("session:completed", {"sessionId": session_id, "status": status}, event_id=final_id)
            return
        checked_at = time.monotonic()
        while True:
            event = await listener.next(settings.APERTUR_SSE_HEARTBEAT_SECONDS)
            if listener.closing:
                return
            if still_allowed is not None and time.monotonic() - checked_at >= settings.APERTUR_SSE_RECHECK_SECONDS:
                if not await db(still_allowed):
                    return
                checked_at = time.monotonic()
            if event is None:
                yield HEARTBEAT
                continue
            for frame in _frames(event, anonymous=anonymous):
                yield frame
            # A new or changed password shuts out those who watched without it: they must give it again.
            if session_ended(event) or (anonymous and _password_changed(event)):
                return
