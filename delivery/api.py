"""Delivery endpoints: a session's delivery status and the manual retry (docs/api.md "Delivery").

Thin: parse, call a selector or service, render a document.
"""

from datetime import datetime

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.schema import errors
from apertur.api.views import KeyApiView
from apertur.api.waiting import Waiting, WaitResponse
from delivery import documents, selectors, services
from delivery import schema as shapes
from projects.models import Membership
from sessions_app.models import UploadSession
from sessions_app.selectors import session_for_project


class DeliveryStatusView(KeyApiView):
    """`GET /api/v1/upload-sessions/{id}/delivery-status` (docs/api.md "Delivery status")."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        pollFrom = serializers.DateTimeField(required=False)

    @extend_schema(
        summary="A session's delivery status (a long poll with pollFrom)",
        parameters=[Input],
        responses={200: shapes.DeliveryStatusSerializer, **errors(400, 503)},
        examples=[shapes.DELIVERY_STATUS_EXAMPLE],
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = session_for_project(project=self.project, session_id=session_id)
        query = {key: value for key, value in request.query_params.items() if value != ""}
        params = self.Input(data=query)
        params.is_valid(raise_exception=True)
        poll_from = params.validated_data.get("pollFrom")
        if poll_from is None or selectors.changed_since(session, poll_from):
            return self.snapshot(session)
        # Waits until the session changes, at most APERTUR_POLL_FROM_MAX_SECONDS (docs/api.md "Delivery status").
        # Every waiter of the session woken by one change shares one read of the document.
        return WaitResponse(
            Waiting(
                timeout=settings.APERTUR_POLL_FROM_MAX_SECONDS,
                shared_look=(f"delivery-status:{session.pk}", lambda: self.snapshot_data(session.pk)),
                decide=lambda snapshot: Response(snapshot[1]) if snapshot[0] > poll_from else None,
                on_timeout=lambda: Response(self.snapshot_data(session.pk)[1]),
            )
        )

    @staticmethod
    def snapshot(session: UploadSession) -> Response:
        images = selectors.images_with_deliveries(session=session)
        return Response(documents.delivery_status_document(session, images=images))

    @staticmethod
    def snapshot_data(session_id: str) -> tuple[datetime, dict]:
        """The document and the moment it compares with `pollFrom` (lastChanged, to the millisecond)."""
        session = selectors.session_by_id(session_id)
        images = selectors.images_with_deliveries(session=session)
        return selectors.last_changed_shown(session), documents.delivery_status_document(session, images=images)


class DeliveryRetryView(KeyApiView):
    """`POST /api/v1/upload-sessions/{id}/deliveries/{deliveryId}/retry` (docs/api.md "Retrying a delivery")."""

    dashboard_write_roles = Membership.ALL_ROLES

    @extend_schema(
        summary="Retry a failed delivery",
        request=None,
        responses={
            200: shapes.RetriedDeliverySerializer,
            **errors((409, "NOT_FAILED", "DESTINATION_DELETED", "IMAGE_NO_LONGER_STAGED")),
        },
    )
    def post(self, request: Request, session_id: str, delivery_id: str) -> Response:
        session = session_for_project(project=self.project, session_id=session_id)
        delivery = selectors.delivery_for_session(session=session, delivery_id=delivery_id)
        delivery = services.delivery_retry(delivery=delivery)
        return Response(documents.delivery_retried_document(delivery))
