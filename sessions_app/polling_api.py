"""Pull delivery endpoints (docs/api.md "Pull delivery"), both variants. Thin: parse, call a selector or service,
render a document.

- Client variant: the client lists the session's queue, downloads each image and acknowledges it.
- Held variant: one request waits for the next image, which it leases; the client downloads and acknowledges it
  by the image's id alone.
"""

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.errors import error_body
from apertur.api.schema import errors
from apertur.api.views import KeyApiView
from apertur.api.waiting import Waiting, WaitResponse
from apertur.errors import AppError
from apertur.streaming import StreamedFileResponse
from projects.models import Membership
from sessions_app import documents, polling, selectors
from sessions_app import schema as shapes
from sessions_app.models import Image, UploadSession


class PullApiView(KeyApiView):
    dashboard_write_roles = Membership.ALL_ROLES

    def long_polling_session(self, session_id: str) -> UploadSession:
        session = selectors.session_for_project(project=self.project, session_id=session_id)
        polling.ensure_long_polling(session=session)
        return session

    def long_polling_image(self, image_id: str) -> Image:
        image = selectors.image_for_project(project=self.project, image_id=image_id)
        polling.ensure_long_polling(session=image.session)
        return image


def staged_image_response(image: Image) -> StreamedFileResponse:
    """The original bytes as uploaded (an encrypted upload was decrypted before it was staged), streamed."""
    staged = _open_staged(image)
    if staged is None:
        raise AppError(
            410,
            "IMAGE_NO_LONGER_STAGED",
            "This image's bytes were deleted after the retention period (APERTUR_STAGING_RETENTION_DAYS).",
        )
    # `filename` is sanitised on upload; Django writes it as an RFC 6266 attachment name (filename*= when needed).
    response = StreamedFileResponse(staged, content_type=image.mime_type, as_attachment=True, filename=image.filename)
    response["Content-Length"] = str(image.size_bytes)
    response["Cache-Control"] = "private, no-store"
    return response


def _open_staged(image: Image) -> File | None:
    if image.staged_deleted_at is not None:
        return None
    try:
        return default_storage.open(image.staged_name, "rb")
    except FileNotFoundError:
        return None


# --- client variant -------------------------------------------------------------------------------


class SessionPollView(PullApiView):
    """`GET /api/v1/upload-sessions/{id}/poll`: the session's unacknowledged images, oldest first, at once."""

    rate_limit_scope = "session_read"

    @extend_schema(
        summary="The session's pull queue",
        responses={200: shapes.PullQueueSerializer, **errors(shapes.NOT_LONG_POLLING)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = self.long_polling_session(session_id)
        return Response(documents.pull_queue_document(selectors.pull_queue(session=session)))


class SessionImageView(PullApiView):
    """`GET /api/v1/upload-sessions/{id}/images/{imageId}`: the image's bytes."""

    rate_limit_scope = "session_read"

    @extend_schema(
        summary="Download a queued image",
        responses={**shapes.IMAGE_BYTES, **errors(shapes.NOT_LONG_POLLING), **shapes.IMAGE_GONE},
    )
    def get(self, request: Request, session_id: str, image_id: str) -> StreamedFileResponse:
        session = self.long_polling_session(session_id)
        return staged_image_response(selectors.image_for_session(session=session, image_id=image_id))


class SessionImageAckView(PullApiView):
    """`POST /api/v1/upload-sessions/{id}/images/{imageId}/ack` (no body)."""

    @extend_schema(
        summary="Acknowledge a queued image",
        request=None,
        responses={
            200: shapes.AcknowledgedSerializer,
            **errors(shapes.NOT_LONG_POLLING, (409, "ALREADY_ACKNOWLEDGED")),
        },
    )
    def post(self, request: Request, session_id: str, image_id: str) -> Response:
        session = self.long_polling_session(session_id)
        polling.image_acknowledge(image=selectors.image_for_session(session=session, image_id=image_id))
        return Response(documents.acknowledged_document())


# --- held variant ---------------------------------------------------------------------------------


class HeldPollView(PullApiView):
    """`GET /api/v1/sessions/{id}/poll?timeout=`: waits up to `timeout` seconds for the next image, leases it."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        timeout = serializers.IntegerField(
            min_value=1,
            max_value=settings.APERTUR_POLL_MAX_TIMEOUT_SECONDS,
            default=settings.APERTUR_POLL_MAX_TIMEOUT_SECONDS,
        )

    @extend_schema(
        summary="Wait for the next image and lease it (held poll)",
        parameters=[Input],
        responses={
            200: shapes.LeasedImageSerializer,
            204: OpenApiResponse(description="No image could be taken within `timeout`."),
            **errors(
                (400, "VALIDATION_ERROR"),
                (410, "POLLING_FINISHED"),
                (503, "EVENTS_UNAVAILABLE"),
            ),
        },
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = self.long_polling_session(session_id)
        params = self.Input(data={key: value for key, value in request.query_params.items() if value != ""})
        params.is_valid(raise_exception=True)
        answer = self.offer(session.pk)
        if answer is not None:
            return answer
        # A new image, a closing session or an acknowledgement publishes an event; a lease running out does not,
        # so the wait also looks again when the earliest lease ends.
        return WaitResponse(
            Waiting(
                timeout=params.validated_data["timeout"],
                check=lambda: self.offer(session.pk),
                on_timeout=lambda: self.offer(session.pk) or Response(status=204),
                recheck_after=lambda: selectors.seconds_until_a_lease_ends(session=session),
            )
        )

    @staticmethod
    def offer(session_id: str) -> Response | None:
        """200 with a newly leased image, 410 when nothing will ever come, or None to keep waiting."""
        session = selectors.session_by_id(session_id)
        if session is None:
            return Response(error_body(404, "NOT_FOUND", "Upload session not found."), status=404)
        image = polling.image_lease_next(session=session)
        if image is not None:
            return Response(documents.leased_image_document(image))
        if selectors.pull_finished(session=session):
            message = "This session is closed and every image was acknowledged: nothing more will arrive."
            return Response(error_body(410, "POLLING_FINISHED", message), status=410)
        return None


class ImageDownloadView(PullApiView):
    """`GET /api/v1/images/{imageId}/download`: the bytes of an image of the key's project."""

    rate_limit_scope = "session_read"

    @extend_schema(
        summary="Download an image by its id",
        responses={**shapes.IMAGE_BYTES, **errors(shapes.NOT_LONG_POLLING), **shapes.IMAGE_GONE},
    )
    def get(self, request: Request, image_id: str) -> StreamedFileResponse:
        return staged_image_response(self.long_polling_image(image_id))


class ImageAckView(PullApiView):
    """`POST /api/v1/images/{imageId}/ack` (no body)."""

    @extend_schema(
        summary="Acknowledge an image by its id",
        request=None,
        responses={
            200: shapes.AcknowledgedSerializer,
            **errors(shapes.NOT_LONG_POLLING, (409, "ALREADY_ACKNOWLEDGED")),
        },
    )
    def post(self, request: Request, image_id: str) -> Response:
        polling.image_acknowledge(image=self.long_polling_image(image_id))
        return Response(documents.acknowledged_document())
