"""Reads behind a project's overview page (projects/overview.py): one aggregate query per group of counters, one
for the chart, one for the latest failures, whatever the size of the project; never writing."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from delivery.models import Delivery
from destinations.models import Destination
from projects.models import Project
from sessions_app.models import Image, UploadSession

CHART_DAYS = 14
LATEST_FAILURES = 10
Status = Delivery.Status
NOT_FINAL = (Status.PENDING, Status.DELIVERING)


@dataclass(frozen=True)
class DayTally:
    """The deliveries made on one day (the project's time zone), by where each stands now."""

    day: date
    delivered: int = 0
    failed: int = 0
    pending: int = 0  # pending or delivering (an attempt running)

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.pending


@dataclass(frozen=True)
class Counters:
    sessions_open: int
    images_today: int
    images_last_7_days: int
    deliveries_delivered: int
    deliveries_failed: int
    deliveries_pending: int
    destinations_needing_reconnect: int


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def overview_counters(*, project: Project, now: datetime) -> Counters:
    """Four aggregate queries. "Today" and the 7 days (today and the 6 before) are calendar days in the site's
    time zone (TIME_ZONE)."""
    today = timezone.localdate(now)
    sessions = UploadSession.objects.filter(project=project).aggregate(
        open=Count("pk", filter=Q(closed_at__isnull=True, expires_at__gt=now))
    )
    images = Image.objects.filter(session__project=project).aggregate(
        today=Count("pk", filter=Q(created_at__gte=_midnight(today))),
        week=Count("pk", filter=Q(created_at__gte=_midnight(today - timedelta(days=6)))),
    )
    deliveries = Delivery.objects.filter(image__session__project=project).aggregate(
        delivered=Count("pk", filter=Q(status=Status.DELIVERED)),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        pending=Count("pk", filter=Q(status__in=NOT_FINAL)),
    )
    reconnect = Destination.objects.alive().filter(project=project, needs_reconnect=True).count()
    return Counters(
        sessions_open=sessions["open"],
        images_today=images["today"],
        images_last_7_days=images["week"],
        deliveries_delivered=deliveries["delivered"],
        deliveries_failed=deliveries["failed"],
        deliveries_pending=deliveries["pending"],
        destinations_needing_reconnect=reconnect,
    )


def deliveries_per_day(*, project: Project, now: datetime, days: int = CHART_DAYS) -> list[DayTally]:
    """The last `days` calendar days (today included, oldest first, days without deliveries as zeros): the
    deliveries created that day, by status now. One query."""
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    rows = (
        Delivery.objects.filter(image__session__project=project, created_at__gte=_midnight(first))
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values_list("day", "status")
        .annotate(count=Count("pk"))
    )
    counts: dict[date, dict[str, int]] = {}
    for day, status, count in rows:
        outcome = "pending" if status in NOT_FINAL else status  # delivering counts as pending
        tally = counts.setdefault(day, {})
        tally[outcome] = tally.get(outcome, 0) + count
    return [DayTally(day=day, **counts.get(day, {})) for day in (first + timedelta(days=n) for n in range(days))]


def latest_failures(*, project: Project, limit: int = LATEST_FAILURES) -> list[Delivery]:
    """The project's failed deliveries, the most recently failed first, with image, session and destination."""
    return list(
        Delivery.objects.filter(image__session__project=project, status=Status.FAILED)
        .select_related("image__session", "destination")
        .order_by("-updated_at", "-pk")[:limit]
    )
