"""The JSON documents of the session endpoints, shaped from what the selectors fetched; no queries here.

Field names mix casings on purpose: they are the official clients' (docs/api.md "Conventions").
"""

from django.conf import settings
from django.urls import reverse

from apertur.api.formats import iso
from destinations.models import Destination
from projects.models import Project
from sessions_app import qr
from sessions_app.activity import ProjectStats, UploadRow
from sessions_app.models import Image, UploadSession
from sessions_app.selectors import SessionListRow
from sessions_app.status import displayed_status


def upload_url(session: UploadSession) -> str:
    """The phone's link: always on the configured public URL, never the request's Host."""
    return f"{settings.APERTUR_PUBLIC_URL}/u/{session.pk}"


def public_session_document(session: UploadSession, *, server_public_key: str | None) -> dict:
    """GET /api/v1/upload/{id}/session and the PATCH answer (docs/api.md "Reading a session").

    `server_public_key` is None only before the server's first key pair exists (never once a session was created
    through the API, which makes it).
    """
    return {
        "id": session.pk,
        "status": displayed_status(session),
        "expiresAt": iso(session.expires_at),
        "tags": session.tags,
        "imagesPerSession": session.max_images,
        "effectiveMaxImages": session.max_images,
        "effectiveAllowedMimeTypes": session.allowed_mime_types,
        "effectiveMaxImageDimension": session.max_image_dimension,
        "effectiveMaxImageSizeMb": session.effective_max_image_size_mb,
        "imagesCount": session.images_count,
        "password_protected": session.password_protected,
        "serverPublicKey": server_public_key,
        "e2eEnabled": False,
        "e2ePublicKey": None,
        "e2eDowngraded": False,
    }


def created_session_document(session: UploadSession, *, destinations: list[Destination]) -> dict:
    """The 201 body of POST /api/v1/upload-sessions (docs/api.md "Creating a session")."""
    qr_path = f"/api/v1/upload-sessions/{session.pk}/qr"
    return {
        "id": session.pk,
        "uuid": session.pk,
        "upload_url": upload_url(session),
        "qr_url": f"{settings.APERTUR_PUBLIC_URL}{qr_path}",
        "qr_specs": {
            "endpoint": qr_path,
            "formats": list(qr.CONTENT_TYPES),
            "params": {
                "format": "|".join(qr.CONTENT_TYPES),
                "size": "64-2048 (pixels)",
                "style": "|".join(qr.STYLES),
                "fg": "hex colour",
                "bg": "hex colour",
                "borderSize": "0-20 (modules)",
                "borderColor": "hex colour",
            },
        },
        "destinations": [
            {"id": str(destination.pk), "type": destination.type, "name": destination.name}
            for destination in destinations
        ],
        "long_polling": session.long_polling,
        "expires_at": iso(session.expires_at),
        "password_protected": session.password_protected,
        "env": session.env,
        "status": displayed_status(session),
        "tags": session.tags,
        "max_images": session.max_images,
    }


def session_row_document(row: SessionListRow) -> dict:
    """One row of GET /api/v1/sessions and /api/v1/sessions/recent (docs/api.md "Listing sessions")."""
    session = row.session
    return {
        "id": session.pk,
        "createdAt": iso(session.created_at),
        "expiresAt": iso(session.expires_at),
        "status": displayed_status(session),
        "projectId": str(session.project_id),
        "projectName": session.project.name,
        "imagesCount": session.images_count,
        "imagesDelivered": row.images_delivered,
        "imagesFailed": row.images_failed,
        "destinationsCount": row.destinations_count,
        "tags": session.tags,
        "longPollingEnabled": session.long_polling,
        "label": session.label,
        "env": session.env,
    }


def page_document(data: list[dict], *, total: int, page: int, page_size: int) -> dict:
    """One page of a paginated list and where it sits (docs/api.md "Listing sessions", "Uploads")."""
    return {"data": data, "total": total, "page": page, "pageSize": page_size, "totalPages": -(-total // page_size)}


def session_page_document(rows: list[SessionListRow], *, total: int, page: int, page_size: int) -> dict:
    """GET /api/v1/sessions: one page of rows and where it sits (docs/api.md "Listing sessions")."""
    return page_document([session_row_document(row) for row in rows], total=total, page=page, page_size=page_size)


def upload_row_document(row: UploadRow) -> dict:
    """One row of GET /api/v1/uploads and /api/v1/uploads/recent (docs/api.md "Uploads")."""
    image, session = row.image, row.image.session
    return {
        "id": image.pk,
        "filename": image.filename,
        "sizeBytes": image.size_bytes,
        "mimeType": image.mime_type,
        "source": image.source,
        "isEncrypted": image.is_encrypted,
        "env": session.env,
        "createdAt": iso(image.created_at),
        "sessionId": session.pk,
        "projectId": str(session.project_id),
        "projectName": session.project.name,
        "destinationsTotal": row.destinations_total,
        "destinationsDelivered": row.destinations_delivered,
        "destinationsFailed": row.destinations_failed,
        "destinationsBreakdown": [
            {"type": destination_type, "count": count} for destination_type, count in row.destinations_by_type.items()
        ],
        "status": str(row.status),
    }


def stats_document(project: Project, stats: ProjectStats) -> dict:
    """GET /api/v1/stats for a key: its one project (docs/api.md "Stats")."""
    finished = stats.deliveries_delivered + stats.deliveries_failed
    return {
        "sessionsThisMonth": stats.sessions_this_month,
        "sessionsInRange": stats.sessions_in_range,
        "sessionsTotal": stats.sessions_total,
        "imagesUploaded": stats.images_uploaded,
        "imagesDelivered": stats.images_delivered,
        "deliverySuccessRate": round(100 * stats.deliveries_delivered / finished, 1) if finished else 0.0,
        "totalProjects": 1,
        "activeKeys": stats.active_keys,
        "topProjects": [{"id": str(project.pk), "name": project.name, "sessions": stats.sessions_in_range}],
    }


def server_key_document(public_key: str) -> dict:
    """GET /api/v1/encryption/server-key and /api/v1/encryption/key (docs/api.md "Encrypted uploads")."""
    return {"publicKey": public_key}


def accepted_image_document(image: Image, *, destinations_count: int) -> dict:
    """The 201 body of POST /api/v1/upload/{id}/images (docs/api.md "Uploading images")."""
    return {
        "id": image.pk,
        "image_index": image.index,
        "filename": image.filename,
        "mime_type": image.mime_type,
        "size_bytes": image.size_bytes,
        "width": image.width,
        "height": image.height,
        "sha256": image.sha256,
        "destinations": destinations_count,
        "long_polling": image.session.long_polling,
    }


# --- pull delivery (docs/api.md "Pull delivery") ------------------------------------------------------


def pull_queue_document(images: list[Image]) -> dict:
    """GET /api/v1/upload-sessions/{id}/poll: the images still to take, oldest first."""
    return {
        "images": [
            {
                "id": image.pk,
                "filename": image.filename,
                "size_bytes": image.size_bytes,
                "mime_type": image.mime_type,
                "source": image.source,
                "created_at": iso(image.created_at),
                "image_index": image.index,
            }
            for image in images
        ]
    }


def leased_image_document(image: Image) -> dict:
    """The 200 body of GET /api/v1/sessions/{id}/poll: the image a held poll leased, and where to fetch it (on the
    configured public URL, like `upload_url`)."""
    download_path = reverse("sessions_app:image-download", kwargs={"image_id": image.pk})
    return {
        "image_id": image.pk,
        "image_index": image.index,
        "filename": image.filename,
        "mime_type": image.mime_type,
        "size_bytes": image.size_bytes,
        "created_at": iso(image.created_at),
        "download_url": f"{settings.APERTUR_PUBLIC_URL}{download_path}",
        "leased_until": iso(image.poll_leased_until),
    }


def acknowledged_document() -> dict:
    """The answer of both acknowledgement endpoints."""
    return {"status": "acknowledged"}
