"""Base API views: one rate-limit scope per view, X-RateLimit-* headers on every answer."""

from rest_framework.request import Request
from rest_framework.views import APIView

from apertur.api import throttling
from apertur.api.authentication import DashboardPrincipal, KeyPrincipal, client_ip
from apertur.api.parsers import JsonParser
from apertur.errors import AppError
from projects.models import Project


class RateLimitedView(APIView):
    parser_classes = [JsonParser]
    rate_limit_scope = "default"
    rate_limit_window: throttling.RateLimitWindow | None = None

    def rate_limit_identity(self, request: Request, **kwargs) -> str:
        raise AppError(500, "INTERNAL_ERROR", "rate-limit identity not defined")

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        self.rate_limit_window = throttling.hit(self.rate_limit_scope, self.rate_limit_identity(request, **kwargs))

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.rate_limit_window is not None:
            for name, value in self.rate_limit_window.headers().items():
                response.setdefault(name, value)
        return response


class KeyApiView(RateLimitedView):
    """An endpoint for API keys (`K` in docs/api.md "Conventions"), limited per key (docs/api.md "Rate limits"), and
    for signed-in dashboard users of the project (docs/api.md "Dashboard access"), limited per user."""

    def rate_limit_identity(self, request: Request, **kwargs) -> str:
        return self.principal.rate_limit_identity

    @property
    def principal(self) -> KeyPrincipal | DashboardPrincipal:
        return self.request.user

    @property
    def project(self) -> Project:
        return self.principal.project

    def project_from_url(self, project_id: str) -> Project:
        """A key sees only its own project; any other id is 'not found' (never reveal existence)."""
        if str(self.project.pk) != str(project_id):
            raise AppError(404, "NOT_FOUND", "Project not found.")
        return self.project


class PublicSessionApiView(RateLimitedView):
    """An endpoint of the phone's upload page (`S` in docs/api.md "Conventions"): no key, limited per client IP and
    session."""

    authentication_classes: list = []
    permission_classes: list = []
    rate_limit_scope = "upload_page"

    def rate_limit_identity(self, request: Request, **kwargs) -> str:
        return f"{client_ip(request)}:{kwargs.get('session_id', '')}"
