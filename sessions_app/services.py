"""Every state change of upload sessions and images (docs/api.md "Upload sessions", "Uploading images")."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apertur.errors import AppError
from apertur.ids import new_image_id, parse_uuid
from delivery import services as delivery_services
from delivery.models import Delivery
from destinations.models import Destination
from projects.models import ALL_MIME_TYPES, ApiKey, Project
from sessions_app.encryption import encryption_key_ensure
from sessions_app.images import ImageFacts
from sessions_app.models import Image, UploadSession
from sessions_app.status import SessionEvent, session_changed
from sessions_app.thumbnails import thumbnails_delete
from sessions_app.uploads import ReceivedFile

Status = UploadSession.Status
CloseReason = UploadSession.CloseReason


# --- creation and settings ------------------------------------------------------------------------


def _resolve_destinations(
    *, project: Project, api_key: ApiKey | None, destination_ids: list[str] | None
) -> list[Destination]:
    if destination_ids is None:
        if api_key is None:
            return []
        return list(api_key.default_destinations.alive().filter(is_active=True).order_by("created_at"))
    canonical = {value: parse_uuid(value) for value in destination_ids}
    found = {
        destination.pk: destination
        for destination in Destination.objects.alive()
        .filter(project=project, is_active=True)
        .filter(pk__in=[key for key in canonical.values() if key is not None])
    }
    unknown = [value for value, key in canonical.items() if key not in found]
    if unknown:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"Unknown or inactive destination: {unknown[0]}.",
            fields={"destination_ids": [f"unknown or inactive destination: {value}" for value in unknown]},
        )
    return list(dict.fromkeys(found[canonical[value]] for value in destination_ids))


def session_create(
    *,
    api_key: ApiKey | None,
    project: Project | None = None,
    destination_ids: list[str] | None = None,
    long_polling: bool | None = None,
    tags: list[str] | None = None,
    expires_at: datetime | None = None,
    max_images: int | None = None,
    allowed_mime_types: list[str] | None = None,
    max_image_dimension: int | None = None,
    password: str | None = None,
    label: str = "",
) -> UploadSession:
    """Create a session; input shapes are already validated by the API serializer.

    The encryption key pair is made here if it does not exist yet, so every session's document can show the
    public key its phone encrypts to, and the GET endpoints that show it never write.

    A session made by a dashboard user (docs/api.md "Dashboard access") has no key: `project` says whose it is,
    and the project's defaults stand in for the key's.
    """
    if api_key is not None:
        project = api_key.project
    if project is None:
        raise ValueError("session_create needs an API key or a project")
    destinations = _resolve_destinations(project=project, api_key=api_key, destination_ids=destination_ids)
    long_polling = bool(long_polling) or (api_key is not None and api_key.long_polling_enabled)
    if not destinations and not long_polling:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            "A session needs at least one destination or long polling: pass destination_ids, "
            "set default destinations on the key, or set long_polling.",
            fields={"destination_ids": ["no destination and no long polling"]},
        )
    effective_max = max_images or (api_key and api_key.max_images) or project.default_max_images
    _check_max_images(effective_max)
    encryption_key_ensure()
    with transaction.atomic():
        session = UploadSession.objects.create(
            project=project,
            api_key=api_key,
            env=api_key.env if api_key is not None else ApiKey.Env.LIVE,
            label=label,
            long_polling=long_polling,
            tags=tags or [],
            expires_at=expires_at or timezone.now() + timedelta(hours=settings.APERTUR_DEFAULT_EXPIRY_HOURS),
            max_images=effective_max,
            allowed_mime_types=allowed_mime_types or (api_key and api_key.allowed_mime_types) or list(ALL_MIME_TYPES),
            max_image_dimension=max_image_dimension or (api_key and api_key.max_image_dimension) or None,
            password_hash=make_password(password) if password else "",
        )
        session.destinations.set(destinations)
        session_changed(session=session, event=SessionEvent.SESSION_CREATED)
    return session


def _check_max_images(value: int) -> None:
    if value > settings.APERTUR_MAX_IMAGES_CAP:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"max_images may be at most {settings.APERTUR_MAX_IMAGES_CAP}.",
            fields={"max_images": [f"at most {settings.APERTUR_MAX_IMAGES_CAP}"]},
        )


def session_update(*, session: UploadSession, changes: dict) -> UploadSession:
    """Apply a PATCH. `password: None` removes the password. A session closed only because it was full or
    expired opens again when the change lifts that reason (more images, a later expiry)."""
    if "max_images" in changes:
        _check_max_images(changes["max_images"])
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session.pk)
        for field in ("expires_at", "max_images", "allowed_mime_types", "max_image_dimension", "max_image_size_mb"):
            if field in changes:
                setattr(session, field, changes[field])
        if "password" in changes:
            session.password_hash = make_password(changes["password"]) if changes["password"] else ""
        now = timezone.now()
        reopens = (session.close_reason == CloseReason.FULL and session.images_count < session.max_images) or (
            session.close_reason == CloseReason.EXPIRED and session.expires_at > now
        )
        if reopens:
            session.closed_at, session.close_reason = None, ""
        if session.closed_at is None and session.images_count >= session.max_images:
            session.closed_at, session.close_reason = now, CloseReason.FULL
        session.save()
        session_changed(session=session, event=SessionEvent.SESSION_UPDATED, fields=sorted(changes))
    return session


# --- lifecycle ------------------------------------------------------------------------------------


def session_expire_if_due(*, session: UploadSession) -> UploadSession:
    if session.closed_at is None and session.expires_at <= timezone.now():
        with transaction.atomic():
            closed = UploadSession.objects.filter(pk=session.pk, closed_at__isnull=True).update(
                closed_at=session.expires_at, close_reason=CloseReason.EXPIRED
            )
            session.refresh_from_db()
            if closed:
                session_changed(session=session, event=SessionEvent.SESSION_CLOSED, reason=CloseReason.EXPIRED)
    return session


def sessions_expire_due() -> int:
    """Periodic: close every open session whose expiry passed. Returns how many were expired."""
    expired = 0
    for session in UploadSession.objects.filter(closed_at__isnull=True, expires_at__lte=timezone.now())[:500]:
        session_expire_if_due(session=session)
        expired += 1
    return expired


def session_complete(*, session: UploadSession) -> UploadSession:
    """The phone user is done. Completing twice is harmless; an expired session cannot be completed."""
    session = session_expire_if_due(session=session)
    if session.close_reason == CloseReason.EXPIRED:
        raise AppError(410, "SESSION_EXPIRED", "This upload session has expired.")
    with transaction.atomic():
        closed = UploadSession.objects.filter(pk=session.pk, closed_at__isnull=True).update(
            closed_at=timezone.now(), close_reason=CloseReason.COMPLETED
        )
        session.refresh_from_db()
        if closed:
            session_changed(session=session, event=SessionEvent.SESSION_CLOSED, reason=CloseReason.COMPLETED)
    return session


def ensure_open_for_upload(*, session: UploadSession) -> UploadSession:
    """The first session-level checks of docs/api.md "Uploading images", in order: expired (410), closed (409).

    A session closed only because it is full is left to `ensure_room_for_image` (422), which docs/api.md
    puts after the password check.
    """
    session = session_expire_if_due(session=session)
    if session.close_reason == CloseReason.EXPIRED or session.expires_at <= timezone.now():
        raise AppError(410, "SESSION_EXPIRED", "This upload session has expired.")
    if session.closed_at is not None and session.close_reason != CloseReason.FULL:
        raise AppError(409, "SESSION_CLOSED", "This upload session is closed.")
    return session


def ensure_room_for_image(*, session: UploadSession) -> None:
    """The count check of docs/api.md "Uploading images" (422); `image_accept` repeats it under the session's lock."""
    if session.close_reason == CloseReason.FULL or session.images_count >= session.max_images:
        raise session_full(session)


def session_full(session: UploadSession) -> AppError:
    return AppError(422, "SESSION_FULL", f"This session already has its {session.max_images} images.")


# --- images ---------------------------------------------------------------------------------------


def image_accept(
    *,
    session: UploadSession,
    received: ReceivedFile,
    facts: ImageFacts,
    filename: str,
    source: str,
    is_encrypted: bool = False,
) -> Image:
    """Stage the bytes, then commit the image, its deliveries and the session change in one transaction.

    The count is checked again under the session's row lock (SQLite: the IMMEDIATE write lock),
    so concurrent uploads can never exceed max_images.
    """
    image_id = new_image_id()
    staged_name = default_storage.save(f"staging/{session.pk}/{image_id}.{facts.extension}", File(received.file))
    try:
        with transaction.atomic():
            locked = UploadSession.objects.select_for_update().get(pk=session.pk)
            ensure_open_for_upload(session=locked)
            ensure_room_for_image(session=locked)
            now = timezone.now()
            image = Image.objects.create(
                id=image_id,
                session=locked,
                index=locked.images_count,
                filename=filename,
                mime_type=facts.mime_type,
                extension=facts.extension,
                size_bytes=received.size,
                width=facts.width,
                height=facts.height,
                sha256=received.sha256,
                source=source,
                is_encrypted=is_encrypted,
                staged_name=staged_name,
                created_at=now,
            )
            locked.images_count += 1
            if locked.images_count >= locked.max_images:
                locked.closed_at, locked.close_reason = now, CloseReason.FULL
            locked.save(update_fields=["images_count", "closed_at", "close_reason"])
            deliveries = delivery_services.deliveries_create_for_image(
                image=image, destinations=list(locked.destinations.alive().filter(is_active=True))
            )
            session_changed(
                session=locked,
                event=SessionEvent.IMAGE_ACCEPTED,
                image_id=image.pk,
                index=image.index,
                filename=image.filename,
                size_bytes=image.size_bytes,
                mime_type=image.mime_type,
            )
            delivery_services.deliveries_send_after_commit(deliveries)
    except BaseException:
        default_storage.delete(staged_name)
        raise
    return image


def images_purge_staged() -> int:
    """Periodic: delete staged bytes nobody needs any more (docs/api.md "Delivery", "Pull delivery").

    An image's bytes are needed while any delivery is still to run, and for the retention period after its
    deliveries last changed (a manual retry). Beyond that they are kept for the retention period after the upload;
    an image of a long-polling session is kept until it is acknowledged, but not past that period either (a
    client that never comes back does not keep it forever).
    """
    cutoff = timezone.now() - timedelta(days=settings.APERTUR_STAGING_RETENTION_DAYS)
    expired = (
        Image.objects.filter(staged_deleted_at__isnull=True)
        .filter(Q(created_at__lte=cutoff) | Q(session__long_polling=True, acknowledged_at__isnull=False))
        .exclude(deliveries__status__in=[Delivery.Status.PENDING, Delivery.Status.DELIVERING])
        .exclude(deliveries__updated_at__gt=cutoff)
        .only("pk", "staged_name")[:200]
    )
    purged = 0
    for image in expired:
        default_storage.delete(image.staged_name)
        thumbnails_delete(image.staged_name)
        Image.objects.filter(pk=image.pk).update(staged_deleted_at=timezone.now())
        purged += 1
    return purged
