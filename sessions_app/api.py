"""Upload-session endpoints (docs/api.md "Upload sessions", "Uploading images"). Thin: parse, call a service or
selector, render a document."""

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.authentication import ApiKeyOrQueryTokenAuthentication, DashboardSessionAuthentication, client_ip
from apertur.api.fields import StrictCharField
from apertur.api.parsers import JsonParser
from apertur.api.schema import errors
from apertur.api.views import KeyApiView, PublicSessionApiView
from apertur.errors import AppError
from projects.models import ALL_MIME_TYPES, Membership
from sessions_app import documents, live, passwords, qr, receiving, selectors, services
from sessions_app import schema as shapes
from sessions_app.uploads import read_upload_body

# The largest value an integer column holds on every supported database; beyond it the insert fails (500).
LARGEST_STORED_INTEGER = 2**31 - 1


def _validate_expiry(value):
    now = timezone.now()
    if value <= now:
        raise serializers.ValidationError("must be in the future")
    if value > now + timedelta(hours=settings.APERTUR_MAX_EXPIRY_HOURS):
        raise serializers.ValidationError(f"must be at most {settings.APERTUR_MAX_EXPIRY_HOURS} hours ahead")
    return value


class SessionSettingsInput(serializers.Serializer):
    """Fields shared by create and PATCH, validated the same way."""

    expires_at = serializers.DateTimeField(required=False, validators=[_validate_expiry])
    max_images = serializers.IntegerField(required=False, min_value=1)
    allowed_mime_types = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_MIME_TYPES), required=False, allow_empty=False
    )
    max_image_dimension = serializers.IntegerField(
        required=False, min_value=1, max_value=LARGEST_STORED_INTEGER, allow_null=True
    )
    password = StrictCharField(required=False, min_length=4, max_length=128, trim_whitespace=False)


class SessionCreateView(KeyApiView):
    rate_limit_scope = "session_create"
    dashboard_write_roles = Membership.ALL_ROLES

    class Input(SessionSettingsInput):
        destination_ids = serializers.ListField(child=StrictCharField(), required=False)
        long_polling = serializers.BooleanField(required=False)
        tags = serializers.ListField(
            child=StrictCharField(min_length=1, max_length=128, trim_whitespace=False),
            required=False,
            max_length=20,
        )
        expires_in_hours = serializers.IntegerField(
            required=False, min_value=1, max_value=settings.APERTUR_MAX_EXPIRY_HOURS
        )
        label = StrictCharField(required=False, max_length=200, allow_blank=True)

        def validate(self, data):
            if "expires_in_hours" in data and "expires_at" in data:
                raise serializers.ValidationError({"expires_at": ["give expires_at or expires_in_hours, not both"]})
            if "expires_in_hours" in data:
                data["expires_at"] = timezone.now() + timedelta(hours=data.pop("expires_in_hours"))
            return data

    @extend_schema(
        summary="Create an upload session",
        request=Input,
        responses={201: shapes.CreatedSessionSerializer},
        examples=[shapes.CREATE_EXAMPLE, shapes.CREATED_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        session = services.session_create(api_key=request.auth, project=self.project, **payload.validated_data)
        destinations = selectors.session_destinations(session=session)
        return Response(documents.created_session_document(session, destinations=destinations), status=201)


class SessionUpdateView(KeyApiView):
    dashboard_write_roles = Membership.ALL_ROLES

    class Input(SessionSettingsInput):
        password = StrictCharField(required=False, min_length=4, max_length=128, trim_whitespace=False, allow_null=True)
        max_image_size_mb = serializers.IntegerField(
            required=False, min_value=1, max_value=settings.APERTUR_MAX_IMAGE_SIZE_MB_CAP, allow_null=True
        )

    @extend_schema(summary="Update an upload session", request=Input, responses={200: shapes.SessionSerializer})
    def patch(self, request: Request, session_id: str) -> Response:
        session = selectors.session_for_project(project=self.project, session_id=session_id)
        payload = self.Input(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        session = services.session_update(session=session, changes=payload.validated_data)
        return Response(documents.public_session_document(session, server_public_key=selectors.server_public_key()))


class IgnoreClientContentNegotiation(BaseContentNegotiation):
    """Always the first renderer (JSON, for errors), whatever `Accept` or `?format=` say.

    DRF reads `?format=` as a renderer override and 404s on `png`; on the QR endpoint it names the image type.
    https://www.django-rest-framework.org/api-guide/content-negotiation/#custom-content-negotiation
    """

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class HexColourField(serializers.CharField):
    """A colour as `RRGGBB`, `#RRGGBB` or `RGB`, given back as `#rrggbb`."""

    default_error_messages = {"invalid": "must be a hex colour: RRGGBB, #RRGGBB or RGB"}

    def to_internal_value(self, data) -> str:
        try:
            return qr.hex_colour(super().to_internal_value(data))
        except ValueError:
            self.fail("invalid")


class SessionQrView(KeyApiView):
    """The QR image of the session's upload URL (docs/api.md "QR code")."""

    rate_limit_scope = "session_read"
    content_negotiation_class = IgnoreClientContentNegotiation

    class Input(serializers.Serializer):
        format = serializers.ChoiceField(choices=list(qr.CONTENT_TYPES), default="png")
        size = serializers.IntegerField(min_value=64, max_value=2048, default=512)
        style = serializers.ChoiceField(choices=qr.STYLES, default="square")
        fg = HexColourField(default="000000")
        bg = HexColourField(default="ffffff")
        borderSize = serializers.IntegerField(min_value=0, max_value=20, default=4)
        borderColor = HexColourField(required=False)

    @extend_schema(
        summary="The session's QR code",
        parameters=[Input],
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="`format=png` (the default)"),
            (200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, description="`format=svg`"),
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="`format=jpeg`"),
            **errors(400),
        },
    )
    def get(self, request: Request, session_id: str) -> HttpResponse:
        session = selectors.session_for_project(project=self.project, session_id=session_id)
        payload = self.Input(data=request.query_params)
        payload.is_valid(raise_exception=True)
        options = payload.validated_data
        image, content_type = qr.render_qr(
            documents.upload_url(session),
            qr.QrOptions(
                format=options["format"],
                size=options["size"],
                style=options["style"],
                foreground=options["fg"],
                background=options["bg"],
                border_modules=options["borderSize"],
                border_color=options.get("borderColor"),
            ),
        )
        return HttpResponse(image, content_type=content_type, headers={"Cache-Control": "private, max-age=300"})


class SessionListView(KeyApiView):
    """`GET /api/v1/sessions` (docs/api.md "Listing sessions"): the key's project's sessions, newest first, in
    pages."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        page = serializers.IntegerField(min_value=1, max_value=LARGEST_STORED_INTEGER, default=1)
        pageSize = serializers.IntegerField(min_value=1, max_value=100, default=20)

    @extend_schema(
        summary="List the project's sessions",
        parameters=[Input],
        responses={200: shapes.SessionPageSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        payload = self.Input(data=request.query_params)
        payload.is_valid(raise_exception=True)
        page, page_size = payload.validated_data["page"], payload.validated_data["pageSize"]
        rows, total = selectors.session_list_rows(project=self.project, offset=(page - 1) * page_size, limit=page_size)
        return Response(documents.session_page_document(rows, total=total, page=page, page_size=page_size))


class RecentSessionsView(KeyApiView):
    """`GET /api/v1/sessions/recent` (docs/api.md "Listing sessions"): a bare array, newest first."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        limit = serializers.IntegerField(min_value=1, max_value=50, default=10)

    @extend_schema(
        summary="The project's newest sessions",
        parameters=[Input],
        responses={200: shapes.SessionRowSerializer(many=True), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        payload = self.Input(data=request.query_params)
        payload.is_valid(raise_exception=True)
        rows, _ = selectors.session_list_rows(project=self.project, offset=0, limit=payload.validated_data["limit"])
        return Response([documents.session_row_document(row) for row in rows])


# --- the phone's endpoints (S) ---------------------------------------------------------------------


class PublicSessionView(PublicSessionApiView):
    @extend_schema(summary="Read a session (the phone's view)", responses={200: shapes.SessionSerializer})
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_public(session_id=session_id)
        return Response(documents.public_session_document(session, server_public_key=selectors.server_public_key()))


class VerifyPasswordView(PublicSessionApiView):
    class Input(serializers.Serializer):
        password = StrictCharField(max_length=128, trim_whitespace=False, allow_blank=True)

    @extend_schema(
        summary="Check a session's password",
        request=Input,
        responses={200: shapes.PasswordCheckSerializer, **errors((429, "TOO_MANY_PASSWORD_ATTEMPTS", "RATE_LIMITED"))},
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_public(session_id=session_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        valid = passwords.session_password_verify(
            session=session, password=payload.validated_data["password"], ip=client_ip(request)
        )
        response = Response({"valid": valid})
        if valid and session.password_protected:
            passwords.password_cookie_set(response, session)
        return response


class CompleteView(PublicSessionApiView):
    parser_classes = [JsonParser, MultiPartParser]
    takes_session_password = True

    @extend_schema(
        summary="Complete a session (the phone user is done)",
        request=None,
        responses={
            200: shapes.CompletedSessionSerializer,
            **errors(
                (401, "PASSWORD_REQUIRED", "INVALID_PASSWORD"),
                (410, "SESSION_EXPIRED"),
                (429, "TOO_MANY_PASSWORD_ATTEMPTS", "RATE_LIMITED"),
            ),
        },
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_public(session_id=session_id)
        passwords.ensure_password(
            session=session,
            password=request.headers.get("x-session-password"),
            cookie=passwords.api_password_cookie_read(request, session.pk),
            ip=client_ip(request),
        )
        session = services.session_complete(session=session)
        return Response({"id": session.pk, "status": session.status, "imagesCount": session.images_count})


class ImageUploadView(PublicSessionApiView):
    """`POST /api/v1/upload/{id}/images`: a multipart image, an encrypted multipart envelope
    (`X-Aptr-Encrypted: default`), or the envelope as a JSON body (docs/api.md "Uploading images")."""

    # The body is read by `image_receive` (through uploads.read_upload_body) once the session's rules passed,
    # not by DRF's parsers: they would read it before those rules, and a JSON body only up to Django's
    # DATA_UPLOAD_MAX_MEMORY_SIZE.
    parser_classes: list = []
    takes_session_password = True

    @extend_schema(
        summary="Upload an image",
        request={
            "multipart/form-data": shapes.UploadFormSerializer,
            "application/json": shapes.EncryptedUploadSerializer,
        },
        parameters=[shapes.ENCRYPTED_HEADER],
        responses={
            201: shapes.AcceptedImageSerializer,
            **errors(
                (400, "VALIDATION_ERROR", "INVALID_IMAGE", "INVALID_ENCRYPTED_PAYLOAD"),
                (401, "PASSWORD_REQUIRED", "INVALID_PASSWORD"),
                (409, "SESSION_CLOSED"),
                (410, "SESSION_EXPIRED"),
                (413, "FILE_TOO_LARGE"),
                (415, "UNSUPPORTED_MEDIA_TYPE"),
                (422, "SESSION_FULL", "DIMENSION_EXCEEDED"),
                (429, "TOO_MANY_PASSWORD_ATTEMPTS", "RATE_LIMITED"),
                (503, "SERVER_BUSY"),
            ),
        },
        examples=[shapes.ACCEPTED_EXAMPLE],
    )
    def post(self, request: Request, session_id: str) -> Response:
        http_request = request._request  # the plain Django request, as the phone page's form post has
        json_body = http_request.content_type == "application/json"
        image = receiving.image_receive(
            session_id=session_id,
            read_body=partial(read_upload_body, http_request),
            encryption_scheme=request.headers.get("X-Aptr-Encrypted") or ("default" if json_body else None),
            password=request.headers.get("x-session-password"),
            password_cookie=passwords.api_password_cookie_read(request, session_id),
            ip=client_ip(request),
        )
        return Response(
            documents.accepted_image_document(image, destinations_count=image.deliveries.count()), status=201
        )


class EncryptionKeyView(KeyApiView):
    """`GET /api/v1/encryption/server-key` and `/api/v1/encryption/key` (docs/api.md "Encrypted uploads"): the public
    key to encrypt to."""

    @extend_schema(
        summary="The server's public key for encrypted uploads",
        responses={200: shapes.ServerKeySerializer, **errors((503, "ENCRYPTION_KEY_UNAVAILABLE"))},
    )
    def get(self, request: Request) -> Response:
        public_key = selectors.server_public_key()
        if public_key is None:
            # A GET never writes, so it cannot make the key pair. It exists once the server or a worker has started
            # (`apertur_run`, `rundramatiq`) or a session was created; before that a client has nothing to encrypt
            # for anyway. 503: the server is not ready for this yet, and the client may simply ask again.
            raise AppError(
                503,
                "ENCRYPTION_KEY_UNAVAILABLE",
                "The server has no encryption key yet; it is made when the server or a worker starts, "
                "or when the first upload session is created.",
            )
        return Response(documents.server_key_document(public_key))


# --- live events (docs/api.md "Server-Sent Events") -----------------------------------------------------------


class PublicEventStreamView(PublicSessionApiView):
    """`GET /api/v1/upload/{id}/events`: the phone page's stream; the session password where one is set."""

    # A browser's EventSource asks for `Accept: text/event-stream`, which no JSON renderer offers; refusals are
    # still JSON.
    content_negotiation_class = IgnoreClientContentNegotiation
    takes_session_password = True

    @extend_schema(
        summary="The session's live events (the phone's stream)",
        parameters=shapes.EVENT_STREAM_PARAMETERS,
        responses={
            **shapes.EVENT_STREAM,
            **errors(
                (401, "PASSWORD_REQUIRED", "INVALID_PASSWORD"),
                (429, "TOO_MANY_PASSWORD_ATTEMPTS", "RATE_LIMITED"),
                503,
            ),
        },
    )
    def get(self, request: Request, session_id: str) -> HttpResponse:
        session = selectors.session_public(session_id=session_id)
        passwords.ensure_password(
            session=session,
            password=request.headers.get("x-session-password"),
            cookie=passwords.password_cookie_read(request, session.pk),
            ip=client_ip(request),
        )
        return live.event_stream_response(request._request, session, anonymous=True)


class SessionEventStreamView(KeyApiView):
    """`GET /api/v1/sessions/{id}/events`: a key's stream, the key in the header or `?token=`."""

    authentication_classes = [ApiKeyOrQueryTokenAuthentication, DashboardSessionAuthentication]
    project_from_query = True  # a dashboard's EventSource names the project in the query (docs/api.md)
    rate_limit_scope = "session_read"
    content_negotiation_class = IgnoreClientContentNegotiation  # as PublicEventStreamView

    @extend_schema(
        summary="The session's live events",
        parameters=shapes.EVENT_STREAM_PARAMETERS,
        responses={**shapes.EVENT_STREAM, **errors(503)},
    )
    def get(self, request: Request, session_id: str) -> HttpResponse:
        session = selectors.session_for_project(project=self.project, session_id=session_id)
        return live.event_stream_response(
            request._request, session, anonymous=False, still_allowed=self.principal.still_allowed
        )
