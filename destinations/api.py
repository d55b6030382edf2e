"""Destination endpoints (SPEC §6.1)."""

import uuid

from rest_framework import serializers
from rest_framework.response import Response

from apertur.api.formats import iso
from apertur.api.views import KeyApiView
from apertur.errors import AppError
from destinations import services
from destinations.backends import BACKENDS
from destinations.models import Destination


def destination_document(destination: Destination) -> dict:
    return {
        "id": str(destination.pk),
        "type": destination.type,
        "name": destination.name,
        "config": services.public_config(destination),
        "isActive": destination.is_active,
        "createdAt": iso(destination.created_at),
        "updatedAt": iso(destination.updated_at),
        "lastDeliveryAt": iso(destination.last_delivery_at),
        "lastError": destination.last_error or None,
        "needsReconnect": destination.needs_reconnect,
    }


class DestinationListView(KeyApiView):
    class Input(serializers.Serializer):
        type = serializers.ChoiceField(choices=sorted(BACKENDS))
        name = serializers.CharField(max_length=200)
        config = serializers.DictField(required=False, default=dict)

    def get(self, request, project_id: str):
        project = self.project_from_url(project_id)
        destinations = Destination.objects.alive().filter(project=project).order_by("created_at")
        return Response([destination_document(destination) for destination in destinations])

    def post(self, request, project_id: str):
        project = self.project_from_url(project_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        destination = services.destination_create(project=project, **payload.validated_data)
        return Response(destination_document(destination), status=201)


class DestinationLookup:
    def destination(self, project_id: str, destination_id: str) -> Destination:
        project = self.project_from_url(project_id)
        try:
            key = uuid.UUID(destination_id)
        except ValueError:
            key = None
        destination = Destination.objects.alive().filter(project=project, pk=key).first()
        if destination is None:
            raise AppError(404, "NOT_FOUND", "Destination not found.")
        return destination


class DestinationDetailView(DestinationLookup, KeyApiView):
    class Input(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        config = serializers.DictField(required=False)
        isActive = serializers.BooleanField(required=False)

    def patch(self, request, project_id: str, destination_id: str):
        destination = self.destination(project_id, destination_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        destination = services.destination_update(
            destination=destination, name=data.get("name"), config=data.get("config"), is_active=data.get("isActive")
        )
        return Response(destination_document(destination))

    def delete(self, request, project_id: str, destination_id: str):
        services.destination_delete(destination=self.destination(project_id, destination_id))
        return Response(status=204)


class DestinationTestView(DestinationLookup, KeyApiView):
    def post(self, request, project_id: str, destination_id: str):
        result = services.destination_test(destination=self.destination(project_id, destination_id))
        body = {"success": result.success, "message": result.message}
        if result.http_status is not None:
            body["status"] = result.http_status
        if result.error:
            body["error"] = result.error
        return Response(body)
