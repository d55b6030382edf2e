"""Reads of deliveries: models only, never writing."""

from collections import defaultdict
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from apertur.errors import AppError
from apertur.ids import parse_uuid
from delivery.models import Delivery
from sessions_app.models import UploadSession


class DeliveryRow(NamedTuple):
    """One delivery as the status readers show it, with its destination's name and type."""

    id: UUID
    destination_id: UUID
    destination_name: str
    destination_type: str
    status: str
    attempts: int
    last_error: str
    next_retry_at: datetime | None
    delivered_at: datetime | None


class ImageRow(NamedTuple):
    """One image of a session as the status readers show it, with its deliveries (oldest first)."""

    id: str
    index: int
    filename: str
    size_bytes: int
    acknowledged_at: datetime | None
    staged_deleted_at: datetime | None
    poll_leased_until: datetime | None
    deliveries: list[DeliveryRow]


_IMAGE_COLUMNS = ("id", "index", "filename", "size_bytes", "acknowledged_at", "staged_deleted_at", "poll_leased_until")
_DELIVERY_COLUMNS = (
    "id",
    "destination_id",
    "destination__name",
    "destination__type",
    "status",
    "attempts",
    "last_error",
    "next_retry_at",
    "delivered_at",
)


def images_with_deliveries(*, session: UploadSession) -> list[ImageRow]:
    """The session's images by index, each with its deliveries (oldest first) and their destinations' names and
    types: two queries whatever the number of images.

    Rows, not model instances: clients poll this (the delivery status, the dashboard's matrix), and building a model
    per image, delivery and destination was most of a read's CPU (docs/benchmarks.md "Delivery status read").
    Images are read first, so a photo committed in between has no row here rather than a row without its
    deliveries."""
    images = list(session.images.order_by("index").values_list(*_IMAGE_COLUMNS))
    deliveries: defaultdict[str, list[DeliveryRow]] = defaultdict(list)
    for image_id, *columns in (
        Delivery.objects.filter(image__session=session)
        .order_by("created_at")
        .values_list("image_id", *_DELIVERY_COLUMNS)
    ):
        deliveries[image_id].append(DeliveryRow(*columns))
    return [ImageRow(*image, deliveries=deliveries.get(image[0], [])) for image in images]


def session_by_id(session_id: str) -> UploadSession:
    """A session already authorised by the caller (a waiting request looking again); 404 if it was deleted since."""
    session = UploadSession.objects.filter(pk=session_id).first()
    if session is None:
        raise AppError(404, "NOT_FOUND", "Session not found.")
    return session


def last_changed_shown(session: UploadSession) -> datetime:
    """`last_changed_at` at the precision `lastChanged` is shown with (milliseconds)."""
    changed = session.last_changed_at
    return changed - timedelta(microseconds=changed.microsecond % 1000)


def changed_since(session: UploadSession, moment: datetime) -> bool:
    """Whether the session changed after `moment`, compared as shown: a client passing back the `lastChanged` it
    got must wait, not be answered at once forever."""
    return last_changed_shown(session) > moment


def delivery_for_session(*, session: UploadSession, delivery_id: str) -> Delivery:
    """A delivery of one of the session's images; any other id is 404."""
    key = parse_uuid(delivery_id)
    delivery = None if key is None else Delivery.objects.filter(image__session=session, pk=key).first()
    if delivery is None:
        raise AppError(404, "NOT_FOUND", "Delivery not found.")
    return delivery
