"""Reads of upload sessions: scoped to the caller, returning models or plain rows, and never writing.

An open session past its expiry is returned as it is stored; `documents.py` shows it as expired
(`sessions_app.status.displayed_status`) and the sweeper closes it — a read does not.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import BooleanField, Count, Min, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apertur.errors import AppError
from delivery.leases import database_now
from delivery.models import Delivery
from destinations.models import Destination
from projects.models import Project
from sessions_app import encryption
from sessions_app.models import Image, UploadSession


def _session_or_404(session_id: str, **scope) -> UploadSession:
    # The id comes from the URL: PostgreSQL refuses a NUL character in a text query (500), and no id has one.
    session = None if "\x00" in session_id else UploadSession.objects.filter(pk=session_id, **scope).first()
    if session is None:
        raise AppError(404, "NOT_FOUND", "Upload session not found.")
    return session


def session_for_project(*, project: Project, session_id: str) -> UploadSession:
    """A session of the caller's project; another project's id is 404 like an unknown one (never reveal it)."""
    return _session_or_404(session_id, project=project)


def session_public(*, session_id: str) -> UploadSession:
    """A session by its id alone: on the phone's endpoints, knowing the id is the authorisation."""
    return _session_or_404(session_id)


def session_by_id(session_id: str) -> UploadSession | None:
    """A session already authorised by the caller (a waiting request looking again); None once deleted."""
    return UploadSession.objects.filter(pk=session_id).first()


def session_destinations(*, session: UploadSession) -> list[Destination]:
    """The session's destinations in the order they were created."""
    return list(session.destinations.order_by("created_at"))


def server_public_key() -> str | None:
    """The PEM public key uploads are encrypted to, or None while no key pair was made yet
    (`encryption.encryption_key_ensure` makes it on session creation and at server and worker start)."""
    key = encryption.encryption_key_current()
    return None if key is None else key.public_key_pem


@dataclass(frozen=True)
class SessionListRow:
    """One session of a list page and the counts its row shows."""

    session: UploadSession  # with its project loaded
    destinations_count: int
    images_delivered: int  # images delivered to every destination
    images_failed: int  # images with at least one failed delivery


def session_list_rows(*, project: Project, offset: int, limit: int) -> tuple[list[SessionListRow], int]:
    """A page of the project's sessions, newest first, and the total count.

    Three queries whatever the page size: the count, the sessions (with their project and destination counts),
    and one aggregate over their images' deliveries.
    """
    sessions = UploadSession.objects.filter(project=project)
    total = sessions.count()
    page = list(
        sessions.select_related("project")
        .annotate(destinations_count=Count("destinations", distinct=True))
        .order_by("-created_at", "-pk")[offset : offset + limit]
    )
    outcomes = _image_outcomes([session.pk for session in page])
    rows = []
    for session in page:
        delivered, failed = outcomes.get(session.pk, (0, 0))
        rows.append(
            SessionListRow(
                session=session,
                destinations_count=session.destinations_count,
                images_delivered=delivered,
                images_failed=failed,
            )
        )
    return rows, total


def _image_outcomes(session_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Per session: (images delivered to every destination, images with a failed delivery)."""
    per_image = (
        Image.objects.filter(session_id__in=session_ids)
        .annotate(
            deliveries_total=Count("deliveries"),
            deliveries_done=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.DELIVERED)),
            deliveries_failed=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.FAILED)),
        )
        .values_list("session_id", "deliveries_total", "deliveries_done", "deliveries_failed")
    )
    outcomes: dict[str, tuple[int, int]] = {}
    for session_id, total, done, failed in per_image:
        delivered, failed_images = outcomes.get(session_id, (0, 0))
        outcomes[session_id] = (delivered + (total > 0 and done == total), failed_images + (failed > 0))
    return outcomes


# --- pull delivery (docs/api.md "Pull delivery") ------------------------------------------------------


def _image_or_404(image_id: str, **scope) -> Image:
    image = None if "\x00" in image_id else Image.objects.select_related("session").filter(pk=image_id, **scope).first()
    if image is None:
        raise AppError(404, "NOT_FOUND", "Image not found.")
    return image


def image_for_session(*, session: UploadSession, image_id: str) -> Image:
    """An image of this session; any other id is 404."""
    return _image_or_404(image_id, session=session)


def image_for_project(*, project: Project, image_id: str) -> Image:
    """An image of the caller's project, with its session; another project's image is 404 like an unknown one."""
    return _image_or_404(image_id, session__project=project)


def pull_queue_images(*, session: UploadSession) -> QuerySet[Image]:
    """The images a pull client still has to take: unacknowledged and still staged (an image whose bytes were
    purged after the retention period cannot be taken any more)."""
    return Image.objects.filter(session=session, acknowledged_at__isnull=True, staged_deleted_at__isnull=True)


def pull_queue(*, session: UploadSession) -> list[Image]:
    """The pull queue, oldest first, leased images included (the client variant knows no leases)."""
    return list(pull_queue_images(session=session).order_by("index"))


def pull_finished(*, session: UploadSession) -> bool:
    """Nothing more will ever be pulled: the session is closed (or past its expiry) and its queue is empty."""
    closed = session.closed_at is not None or session.expires_at <= timezone.now()
    return closed and not pull_queue_images(session=session).exists()


def seconds_until_a_lease_ends(*, session: UploadSession) -> float | None:
    """When the session's earliest running lease runs out (by the database's clock), so a waiting held poll looks
    again then: a lease's end publishes no event. None when no lease runs."""
    now = database_now()
    earliest = (
        pull_queue_images(session=session)
        .filter(poll_leased_until__gt=now)
        .aggregate(earliest=Min("poll_leased_until"))["earliest"]
    )
    return None if earliest is None else (earliest - now).total_seconds()


# --- the dashboard's sessions pages (sessions_app/dashboard.py) --------------------------------------


@dataclass(frozen=True)
class SessionFilters:
    """What the dashboard's session list is narrowed to; None is "any". `api_key_id` "none" means the sessions
    with no key (made in the dashboard, or whose key was deleted since)."""

    status: str | None = None
    tag: str | None = None
    created_from: date | None = None  # inclusive, UTC days
    created_to: date | None = None  # inclusive
    api_key_id: str | None = None


@dataclass(frozen=True)
class SessionSummaryRow:
    """One session of the dashboard's list and its deliveries by outcome."""

    session: UploadSession  # with its api key loaded
    delivered: int
    failed: int
    pending: int  # pending or delivering


NO_KEY = "none"


def _filtered_sessions(project: Project, filters: SessionFilters) -> QuerySet[UploadSession]:
    sessions = UploadSession.objects.filter(project=project)
    if filters.status is not None:
        # As shown (`status.displayed_status`): an open session past its expiry is expired, whatever is stored.
        past_expiry = Q(closed_at__isnull=True, expires_at__lte=timezone.now())
        if filters.status == UploadSession.Status.EXPIRED:
            sessions = sessions.filter(Q(status=filters.status) | past_expiry)
        else:
            sessions = sessions.filter(status=filters.status).exclude(past_expiry)
    if filters.tag is not None:
        sessions = sessions.filter(_has_tag(filters.tag))
    if filters.created_from is not None:
        sessions = sessions.filter(created_at__gte=_start_of_day(filters.created_from))
    if filters.created_to is not None and filters.created_to < date.max:  # the last day there is bounds nothing
        sessions = sessions.filter(created_at__lt=_start_of_day(filters.created_to + timedelta(days=1)))
    if filters.api_key_id == NO_KEY:
        sessions = sessions.filter(api_key__isnull=True)
    elif filters.api_key_id is not None:
        sessions = sessions.filter(api_key_id=filters.api_key_id)
    return sessions


def _start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _has_tag(tag: str) -> Q | RawSQL:
    """Sessions whose tag list holds exactly `tag`. PostgreSQL's jsonb containment does it; SQLite has no
    containment lookup in Django, so its JSON1 `json_each` looks through the list."""
    if connection.vendor == "postgresql":
        return Q(tags__contains=[tag])
    table = UploadSession._meta.db_table
    # The tag is a parameter; the only text put in is this model's own table name.
    return RawSQL(  # noqa: S611
        f'EXISTS (SELECT 1 FROM json_each("{table}"."tags") WHERE json_each.value = %s)',  # noqa: S608
        [tag],
        output_field=BooleanField(),
    )


def session_summary_rows(
    *, project: Project, filters: SessionFilters, offset: int, limit: int
) -> tuple[list[SessionSummaryRow], int]:
    """A page of the project's sessions matching `filters`, newest first, and how many match.

    Three queries whatever the page size: the count, the sessions (with their key), and one aggregate of their
    deliveries by outcome.
    """
    sessions = _filtered_sessions(project, filters)
    total = sessions.count()
    page = list(sessions.select_related("api_key").order_by("-created_at", "-pk")[offset : offset + limit])
    counts = {
        row["image__session_id"]: row
        for row in Delivery.objects.filter(image__session_id__in=[session.pk for session in page])
        .values("image__session_id")
        .annotate(
            delivered=Count("id", filter=Q(status=Delivery.Status.DELIVERED)),
            failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
            pending=Count("id", filter=~Q(status__in=Delivery.TERMINAL)),
        )
        .order_by()
    }
    empty = {"delivered": 0, "failed": 0, "pending": 0}
    return [
        SessionSummaryRow(
            session=session,
            delivered=counts.get(session.pk, empty)["delivered"],
            failed=counts.get(session.pk, empty)["failed"],
            pending=counts.get(session.pk, empty)["pending"],
        )
        for session in page
    ], total
