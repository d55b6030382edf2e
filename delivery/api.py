"""Delivery endpoints: a session's delivery status and the manual retry (docs/api.md "Delivery").

Thin: parse, call a selector or service, render a document.
"""

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.views import KeyApiView
from delivery import documents, selectors, services
from sessions_app.selectors import session_for_project


class DeliveryStatusView(KeyApiView):
    """`GET /api/v1/upload-sessions/{id}/delivery-status` (docs/api.md "Delivery status")."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        # Validated now; the wait it asks for comes with the live-events work (docs/api.md "Delivery status").
        pollFrom = serializers.DateTimeField(required=False)

    def get(self, request: Request, session_id: str) -> Response:
        session = session_for_project(project=self.project, session_id=session_id)
        query = {key: value for key, value in request.query_params.items() if value != ""}
        self.Input(data=query).is_valid(raise_exception=True)
        images = selectors.images_with_deliveries(session=session)
        return Response(documents.delivery_status_document(session, images=images))


class DeliveryRetryView(KeyApiView):
    """`POST /api/v1/upload-sessions/{id}/deliveries/{deliveryId}/retry` (docs/api.md "Retrying a delivery")."""

    def post(self, request: Request, session_id: str, delivery_id: str) -> Response:
        session = session_for_project(project=self.project, session_id=session_id)
        delivery = selectors.delivery_for_session(session=session, delivery_id=delivery_id)
        delivery = services.delivery_retry(delivery=delivery)
        return Response(documents.delivery_retried_document(delivery))
