"""The uploads history and the stats (docs/api.md "Uploads", "Stats"). Thin: parse, call a selector, render."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apertur.api.schema import errors
from apertur.api.views import KeyApiView
from sessions_app import activity, documents
from sessions_app import schema as shapes
from sessions_app.api import LARGEST_STORED_INTEGER

STATS_DEFAULT_RANGE = timedelta(days=30)


class UploadListView(KeyApiView):
    """`GET /api/v1/uploads`: the key's project's images, newest first, in pages."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        page = serializers.IntegerField(min_value=1, max_value=LARGEST_STORED_INTEGER, default=1)
        pageSize = serializers.IntegerField(min_value=1, max_value=100, default=20)

    @extend_schema(
        summary="List the project's uploaded images",
        parameters=[Input],
        responses={200: shapes.UploadPageSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        payload = self.Input(data=request.query_params)
        payload.is_valid(raise_exception=True)
        page, page_size = payload.validated_data["page"], payload.validated_data["pageSize"]
        rows, total = activity.upload_rows(project=self.project, offset=(page - 1) * page_size, limit=page_size)
        data = [documents.upload_row_document(row) for row in rows]
        return Response(documents.page_document(data, total=total, page=page, page_size=page_size))


class RecentUploadsView(KeyApiView):
    """`GET /api/v1/uploads/recent`: a bare array, newest first."""

    rate_limit_scope = "session_read"

    class Input(serializers.Serializer):
        limit = serializers.IntegerField(min_value=1, max_value=50, default=10)

    @extend_schema(
        summary="The project's newest uploaded images",
        parameters=[Input],
        responses={200: shapes.UploadRowSerializer(many=True), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        payload = self.Input(data=request.query_params)
        payload.is_valid(raise_exception=True)
        rows, _ = activity.upload_rows(project=self.project, offset=0, limit=payload.validated_data["limit"])
        return Response([documents.upload_row_document(row) for row in rows])


class StatsView(KeyApiView):
    """`GET /api/v1/stats[?from=&to=]`: the counts of the key's project; `sessionsInRange` counts the sessions
    created from `from` (default: 30 days before `to`) until `to` (default: now)."""

    class Input(serializers.Serializer):
        def get_fields(self) -> dict:
            # `from` is a Python keyword: the fields are declared here rather than as attributes.
            return {"from": serializers.DateTimeField(required=False), "to": serializers.DateTimeField(required=False)}

        def validate(self, data: dict) -> dict:
            if "from" in data and "to" in data and data["from"] >= data["to"]:
                raise serializers.ValidationError({"from": ["must be before to"]})
            return data

    @extend_schema(
        summary="The project's counts",
        parameters=[Input],
        responses={200: shapes.StatsSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        payload = self.Input(data=request.query_params)
        payload.is_valid(raise_exception=True)
        now = timezone.now()
        range_end = payload.validated_data.get("to", now)
        range_start = payload.validated_data.get("from", range_end - STATS_DEFAULT_RANGE)
        stats = activity.project_stats(project=self.project, range_start=range_start, range_end=range_end, now=now)
        return Response(documents.stats_document(self.project, stats))
