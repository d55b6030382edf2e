"""What live-event clients are told (docs/api.md "Live events"): the bus's session events in the names and shapes
the official clients listen for, the same for Server-Sent Events and Socket.IO."""

from typing import Any

from apertur.events import Event
from sessions_app.models import UploadSession
from sessions_app.status import SessionEvent

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


def session_ended(event: Event) -> bool:
    return event.data.get("status") in ENDED
