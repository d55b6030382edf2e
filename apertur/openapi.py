"""The OpenAPI 3 schema at /api/schema/ and Swagger UI at /api/docs/ (docs/api.md "OpenAPI"); how operations are
described is apertur/api/schema.py."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


class SchemaView(SpectacularAPIView):
    """GET /api/schema/: JSON unless `?format=yaml` (or `Accept: application/vnd.oai.openapi`) asks for YAML."""

    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer]


# Swagger UI under a strict policy: its files are ours (drf-spectacular-sidecar, served as static files), its
# start-up script is a separate file (SpectacularSwaggerSplitView), and the page has no inline style.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    )
)


class DocsView(SpectacularSwaggerSplitView):
    """GET /api/docs/: Swagger UI on /api/schema/, served from this server alone."""

    template_name = "openapi/swagger_ui.html"
    url_name = "openapi-schema"

    def finalize_response(self, request: HttpRequest, response: HttpResponse, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response
