"""Reads that need care: scoping to the caller's project, and the delivery-status document."""

from django.conf import settings
from django.db.models import Count, Prefetch, Q
from django.utils import timezone

from apertur.api.formats import iso
from apertur.errors import AppError
from delivery.models import Delivery
from projects.models import Project
from sessions_app import encryption, services
from sessions_app.models import Image, UploadSession


def _session_or_404(session_id: str, **scope) -> UploadSession:
    # The id comes from the URL: PostgreSQL refuses a NUL character in a text query (500), and no id has one.
    session = None if "\x00" in session_id else UploadSession.objects.filter(pk=session_id, **scope).first()
    if session is None:
        raise AppError(404, "NOT_FOUND", "Upload session not found.")
    return services.session_expire_if_due(session=session)


def session_for_project(*, project: Project, session_id: str) -> UploadSession:
    return _session_or_404(session_id, project=project)


def session_public(*, session_id: str) -> UploadSession:
    return _session_or_404(session_id)


def public_session_document(session: UploadSession) -> dict:
    """GET /api/v1/upload/{id}/session (SPEC §4.2)."""
    return {
        "id": session.pk,
        "status": session.status,
        "expiresAt": iso(session.expires_at),
        "tags": session.tags,
        "imagesPerSession": session.max_images,
        "effectiveMaxImages": session.max_images,
        "effectiveAllowedMimeTypes": session.allowed_mime_types,
        "effectiveMaxImageDimension": session.max_image_dimension,
        "effectiveMaxImageSizeMb": session.effective_max_image_size_mb,
        "imagesCount": session.images_count,
        "password_protected": session.password_protected,
        "serverPublicKey": encryption.encryption_key_current().public_key_pem,
        "e2eEnabled": False,
        "e2ePublicKey": None,
        "e2eDowngraded": False,
    }


def upload_url(session: UploadSession) -> str:
    """The phone's link: always on the configured public URL, never the request's Host."""
    return f"{settings.APERTUR_PUBLIC_URL}/u/{session.pk}"


def created_session_document(session: UploadSession) -> dict:
    """The 201 body of POST /api/v1/upload-sessions (SPEC §4.1)."""
    qr_path = f"/api/v1/upload-sessions/{session.pk}/qr"
    return {
        "id": session.pk,
        "uuid": session.pk,
        "upload_url": upload_url(session),
        "qr_url": f"{settings.APERTUR_PUBLIC_URL}{qr_path}",
        "qr_specs": {
            "endpoint": qr_path,
            "formats": ["png", "svg", "jpeg"],
            "params": {
                "format": "png|svg|jpeg",
                "size": "64-2048 (pixels)",
                "style": "square|rounded",
                "fg": "hex colour",
                "bg": "hex colour",
                "borderSize": "0-20 (modules)",
                "borderColor": "hex colour",
            },
        },
        "destinations": [
            {"id": str(destination.pk), "type": destination.type, "name": destination.name}
            for destination in session.destinations.order_by("created_at")
        ],
        "long_polling": session.long_polling,
        "expires_at": iso(session.expires_at),
        "password_protected": session.password_protected,
        "env": session.env,
        "status": session.status,
        "tags": session.tags,
        "max_images": session.max_images,
    }


def delivery_status_document(session: UploadSession) -> dict:
    """GET …/delivery-status (SPEC §8.1): the documented shape and the official clients' shape at once."""
    images = session.images.order_by("index").prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("destination").order_by("created_at"))
    )
    image_rows, file_rows = [], []
    for image in images:
        deliveries = list(image.deliveries.all())
        image_rows.append(
            {
                "image_id": image.pk,
                "image_index": image.index,
                "filename": image.filename,
                "size_bytes": image.size_bytes,
                "deliveries": [_delivery_row(delivery) for delivery in deliveries],
            }
        )
        file_rows.append(
            {
                "record_id": image.pk,
                "filename": image.filename,
                "size_bytes": image.size_bytes,
                "destinations": [
                    {
                        "destination_id": str(delivery.destination_id),
                        "type": delivery.destination.type,
                        "name": delivery.destination.name,
                        "status": delivery.status,
                        "attempts": delivery.attempts,
                        "last_error": delivery.last_error or None,
                    }
                    for delivery in deliveries
                ],
            }
        )
    return {
        "session_id": session.pk,
        "status": session.status,
        "images": image_rows,
        "files": file_rows,
        "lastChanged": iso(session.last_changed_at),
    }


def _delivery_row(delivery: Delivery) -> dict:
    row = {
        "delivery_id": str(delivery.pk),
        "destination_id": str(delivery.destination_id),
        "destination_name": delivery.destination.name,
        "destination_type": delivery.destination.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
    }
    if delivery.delivered_at:
        row["delivered_at"] = iso(delivery.delivered_at)
    if delivery.next_retry_at and delivery.status == Delivery.Status.PENDING:
        row["next_retry_at"] = iso(delivery.next_retry_at)
    if delivery.last_error:
        row["last_error"] = delivery.last_error
    return row


def session_rows(*, project: Project, offset: int, limit: int) -> tuple[list[dict], int]:
    """A page of the project's sessions, newest first, as SPEC §4.2 list rows; and the total count.

    Three queries whatever the page size: the sessions (with their destination counts), and one
    aggregate over their images' deliveries.
    """
    sessions = UploadSession.objects.filter(project=project)
    total = sessions.count()
    page = list(
        sessions.select_related("project")
        .annotate(destinations_count=Count("destinations", distinct=True))
        .order_by("-created_at", "-pk")[offset : offset + limit]
    )
    image_counts = _image_outcomes([session.pk for session in page])
    return [_session_row(session, image_counts.get(session.pk, (0, 0))) for session in page], total


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


def _session_row(session: UploadSession, outcomes: tuple[int, int]) -> dict:
    status = session.status
    if session.closed_at is None and session.expires_at <= timezone.now():
        status = UploadSession.Status.EXPIRED  # the sweeper closes it within seconds; the list already knows
    return {
        "id": session.pk,
        "createdAt": iso(session.created_at),
        "expiresAt": iso(session.expires_at),
        "status": status,
        "projectId": str(session.project_id),
        "projectName": session.project.name,
        "imagesCount": session.images_count,
        "imagesDelivered": outcomes[0],
        "imagesFailed": outcomes[1],
        "destinationsCount": session.destinations_count,
        "tags": session.tags,
        "longPollingEnabled": session.long_polling,
        "label": session.label,
        "env": session.env,
    }
