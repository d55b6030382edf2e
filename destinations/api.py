"""Destination endpoints (docs/api.md "Destinations"). Thin: parse, call a selector or service, render."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.fields import StrictCharField
from apertur.api.views import KeyApiView
from destinations import documents, oauth_connect, selectors, services
from destinations import schema as shapes
from destinations.backends import BACKENDS
from destinations.models import Destination


class DestinationTypesView(KeyApiView):
    """GET /destination-types: the types this server delivers to and, for those connected by OAuth, whether the
    provider is configured here and where a signed-in user connects one (docs/api.md "Destination types")."""

    @extend_schema(
        summary="The destination types this server delivers to",
        responses={200: shapes.DestinationTypeSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        project = self.project
        oauth_types = set(oauth_connect.oauth_types())
        return Response(
            [
                documents.destination_type_document(
                    kind,
                    provider=oauth_connect.provider_status(kind) if kind in oauth_types else None,
                    connect_url=oauth_connect.connect_url(kind, project=project) if kind in oauth_types else None,
                )
                for kind in sorted(BACKENDS)
            ]
        )


class DestinationListView(KeyApiView):
    class Input(serializers.Serializer):
        # Checked against the registry by the service (destination_create), which names the known types.
        type = StrictCharField(max_length=32)
        name = StrictCharField(max_length=200)
        config = serializers.DictField(required=False, default=dict)

    @extend_schema(summary="List the project's destinations", responses={200: shapes.DestinationSerializer(many=True)})
    def get(self, request: Request, project_id: str) -> Response:
        project = self.project_from_url(project_id)
        destinations = selectors.destinations_for_project(project=project)
        return Response([documents.destination_document(destination) for destination in destinations])

    @extend_schema(
        summary="Create a destination",
        request=Input,
        responses={201: shapes.DestinationSerializer},
        examples=[shapes.CREATE_EXAMPLE, shapes.DESTINATION_EXAMPLE],
    )
    def post(self, request: Request, project_id: str) -> Response:
        project = self.project_from_url(project_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        destination = services.destination_create(project=project, **payload.validated_data)
        return Response(documents.destination_document(destination), status=201)


class DestinationLookup:
    def destination(self, project_id: str, destination_id: str) -> Destination:
        return selectors.destination_for_project(
            project=self.project_from_url(project_id), destination_id=destination_id
        )


class DestinationDetailView(DestinationLookup, KeyApiView):
    class Input(serializers.Serializer):
        name = StrictCharField(max_length=200, required=False)
        config = serializers.DictField(required=False)
        isActive = serializers.BooleanField(required=False)

    @extend_schema(summary="Update a destination", request=Input, responses={200: shapes.DestinationSerializer})
    def patch(self, request: Request, project_id: str, destination_id: str) -> Response:
        destination = self.destination(project_id, destination_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        destination = services.destination_update(
            destination=destination, name=data.get("name"), config=data.get("config"), is_active=data.get("isActive")
        )
        return Response(documents.destination_document(destination))

    @extend_schema(summary="Delete a destination", responses={204: None})
    def delete(self, request: Request, project_id: str, destination_id: str) -> Response:
        services.destination_delete(destination=self.destination(project_id, destination_id))
        return Response(status=204)


class DestinationTestView(DestinationLookup, KeyApiView):
    @extend_schema(
        summary="Send a test image to a destination",
        request=None,
        responses={200: shapes.DestinationTestResultSerializer},
    )
    def post(self, request: Request, project_id: str, destination_id: str) -> Response:
        result = services.destination_test(destination=self.destination(project_id, destination_id))
        return Response(documents.check_result_document(result))
