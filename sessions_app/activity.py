"""Reads behind the uploads history and the stats (docs/api.md "Uploads", "Stats"): scoped to the caller's
project, a fixed number of queries whatever the page size, never writing."""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from django.db.models import Count, F, Q

from delivery.models import Delivery
from projects.models import ApiKey, Project
from sessions_app.models import Image, UploadSession


class UploadStatus(StrEnum):
    """Where an image's push deliveries stand (docs/api.md "Uploads")."""

    PENDING = "pending"  # a delivery is still to run or running
    DELIVERED = "delivered"  # delivered to every destination
    FAILED = "failed"  # every delivery failed
    PARTIAL = "partial"  # all done, some delivered and some failed
    STORED_ONLY = "stored_only"  # no destination: kept for pull clients only


def upload_status(*, total: int, delivered: int, failed: int) -> UploadStatus:
    if total == 0:
        return UploadStatus.STORED_ONLY
    if delivered == total:
        return UploadStatus.DELIVERED
    if delivered + failed < total:
        return UploadStatus.PENDING
    return UploadStatus.FAILED if delivered == 0 else UploadStatus.PARTIAL


@dataclass(frozen=True)
class UploadRow:
    """One image of the uploads history and the delivery counts its row shows."""

    image: Image  # with its session and the session's project loaded
    destinations_total: int
    destinations_delivered: int
    destinations_failed: int
    destinations_by_type: dict[str, int]  # destination type → deliveries of the image to that type

    @property
    def status(self) -> UploadStatus:
        return upload_status(
            total=self.destinations_total, delivered=self.destinations_delivered, failed=self.destinations_failed
        )


def upload_rows(*, project: Project, offset: int, limit: int) -> tuple[list[UploadRow], int]:
    """A page of the project's images, newest first, and the total count.

    Three queries whatever the page size: the count, the images (with session and project), and one count of
    their deliveries by image, destination type and status.
    """
    images = Image.objects.filter(session__project=project)
    total = images.count()
    page = list(images.select_related("session__project").order_by("-created_at", "-pk")[offset : offset + limit])
    counts = (
        Delivery.objects.filter(image_id__in=[image.pk for image in page])
        .order_by()
        .values_list("image_id", "destination__type", "status")
        .annotate(count=Count("id"))
    )
    by_image: dict[str, dict[tuple[str, str], int]] = {}
    for image_id, destination_type, status, count in counts:
        by_image.setdefault(image_id, {})[(destination_type, status)] = count
    rows = []
    for image in page:
        tally = by_image.get(image.pk, {})
        by_type: dict[str, int] = {}
        for (destination_type, _), count in tally.items():
            by_type[destination_type] = by_type.get(destination_type, 0) + count
        rows.append(
            UploadRow(
                image=image,
                destinations_total=sum(tally.values()),
                destinations_delivered=_count_with(tally, Delivery.Status.DELIVERED),
                destinations_failed=_count_with(tally, Delivery.Status.FAILED),
                destinations_by_type=dict(sorted(by_type.items())),
            )
        )
    return rows, total


def _count_with(tally: dict[tuple[str, str], int], status: str) -> int:
    return sum(count for (_, each_status), count in tally.items() if each_status == status)


@dataclass(frozen=True)
class ProjectStats:
    """The counts of `GET /api/v1/stats` for one project."""

    sessions_this_month: int
    sessions_in_range: int
    sessions_total: int
    images_uploaded: int
    images_delivered: int  # images delivered to every one of their destinations
    deliveries_delivered: int
    deliveries_failed: int
    active_keys: int


def project_stats(*, project: Project, range_start: datetime, range_end: datetime, now: datetime) -> ProjectStats:
    """Five aggregate queries, whatever the size of the project. The month is the calendar month in UTC."""
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    sessions = UploadSession.objects.filter(project=project).aggregate(
        total=Count("pk"),
        this_month=Count("pk", filter=Q(created_at__gte=month_start)),
        in_range=Count("pk", filter=Q(created_at__gte=range_start, created_at__lt=range_end)),
    )
    images = Image.objects.filter(session__project=project)
    images_delivered = (
        images.annotate(
            deliveries_total=Count("deliveries"),
            deliveries_done=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.DELIVERED)),
        )
        .filter(deliveries_total__gt=0, deliveries_done=F("deliveries_total"))
        .count()
    )
    deliveries = Delivery.objects.filter(image__session__project=project).aggregate(
        delivered=Count("pk", filter=Q(status=Delivery.Status.DELIVERED)),
        failed=Count("pk", filter=Q(status=Delivery.Status.FAILED)),
    )
    return ProjectStats(
        sessions_this_month=sessions["this_month"],
        sessions_in_range=sessions["in_range"],
        sessions_total=sessions["total"],
        images_uploaded=images.count(),
        images_delivered=images_delivered,
        deliveries_delivered=deliveries["delivered"],
        deliveries_failed=deliveries["failed"],
        active_keys=ApiKey.objects.filter(project=project, is_active=True).count(),
    )
