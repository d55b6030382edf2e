"""Reads of deliveries: models only, never writing."""

from datetime import datetime, timedelta

from django.db.models import Prefetch

from apertur.errors import AppError
from apertur.ids import parse_uuid
from delivery.models import Delivery
from sessions_app.models import Image, UploadSession


def images_with_deliveries(*, session: UploadSession) -> list[Image]:
    """The session's images by index, each with its deliveries (oldest first) and their destinations loaded:
    two queries whatever the number of images."""
    return list(
        session.images.order_by("index").prefetch_related(
            Prefetch("deliveries", queryset=Delivery.objects.select_related("destination").order_by("created_at"))
        )
    )


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
