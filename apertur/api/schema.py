"""How the OpenAPI 3 schema of /api/v1 describes the operations (docs/api.md "OpenAPI").

drf-spectacular builds the schema from the views; each operation declares its answers with `@extend_schema` beside
the view, the response documents' shapes living in `<app>/schema.py`. What every operation of a kind has in common
is added here, by `AutoSchema`, so that no operation can forget it:

- API-key operations (`KeyApiView`): the bearer security scheme, 401 and 403;
- every rate-limited operation: 429 with `Retry-After`, and the `X-RateLimit-*` headers on its answers;
- an operation with a path parameter: 404;
- an operation that takes a body: 400 (a malformed body), 413 and 415.

Errors are the envelope of docs/api.md "Errors" (`Error` in the schema).
"""

import re
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

from apertur.api.views import KeyApiView, RateLimitedView

# The reason each status is answered for, when an operation does not say more (docs/api.md "Errors").
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("VALIDATION_ERROR",),
    401: ("AUTHENTICATION_FAILED", "INVALID_SIGNATURE"),
    403: ("IP_NOT_ALLOWED", "FORBIDDEN"),
    404: ("NOT_FOUND",),
    409: ("SESSION_CLOSED",),
    410: ("SESSION_EXPIRED",),
    413: ("FILE_TOO_LARGE",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
    429: ("RATE_LIMITED",),
    503: ("EVENTS_UNAVAILABLE",),
}
ERROR_REASONS: dict[int, str] = {
    400: "Bad input: `fields` names each bad field.",
    401: "No API key, or an unknown, inactive or unsigned one.",
    403: "The key may not be used from this address or origin, or may not do this.",
    404: "Unknown id, or an id of another project (never told apart).",
    413: "The request body is too large.",
    415: "A request body in a content type the operation does not take.",
    429: "Too many requests; `Retry-After` tells how many seconds to wait.",
    503: "Live updates are unavailable right now (Redis unreachable); try again.",
}


# On the answers of a counted request (docs/api.md "Rate limits"); a request refused by authentication has none.
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "The scope's limit per minute."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "What is left in this window."},
    "X-RateLimit-Reset": {"schema": {"type": "integer"}, "description": "When the window ends, in unix seconds."},
}
RETRY_AFTER_HEADER = {"schema": {"type": "integer", "minimum": 1}, "required": True, "description": "Seconds to wait."}


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The error envelope (docs/api.md "Errors")."""

    message = serializers.CharField(help_text="A sentence for people.")
    code = serializers.CharField(help_text="For programs: UPPER_SNAKE, listed per status in each operation.")
    statusCode = serializers.IntegerField(help_text="The HTTP status again.")
    error = serializers.CharField(help_text="The status's reason phrase (RFC 9110).")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: each bad field (`tags.0`, `config.bucket`) with its messages.",
    )


def error(status: int, *codes: str, reason: str = "") -> OpenApiResponse:
    """The envelope answered with `status`, naming the `code`s it may carry."""
    if not codes:
        codes, reason = ERROR_CODES.get(status, ()), reason or ERROR_REASONS.get(status, "")
    listed = ", ".join(f"`{code}`" for code in codes)
    return OpenApiResponse(ErrorSerializer, description=f"{listed}. {reason}".strip(". ") + ".")


def errors(*statuses: int | tuple) -> dict[tuple[int, str], OpenApiResponse]:
    """Responses for `@extend_schema(responses=...)`: a status alone, or `(status, code, …)` to name the codes."""
    responses = {}
    for entry in statuses:
        status, *codes = entry if isinstance(entry, tuple) else (entry,)
        responses[(status, "application/json")] = error(status, *codes)
    return responses


def _implied_errors(view: Any, method: str, path: str) -> dict[tuple[int, str], OpenApiResponse]:
    statuses: list[int] = []
    if isinstance(view, KeyApiView):
        statuses += [401, 403]
    if "{" in path:
        statuses.append(404)
    if method in ("POST", "PUT", "PATCH"):
        statuses += [400, 413, 415]
    if isinstance(view, RateLimitedView):
        statuses.append(429)
    return errors(*statuses)


TAGS = [
    (re.compile(r"/events$"), "Live events"),
    (re.compile(r"^/api/v1/upload/"), "Phone (upload page)"),
    (re.compile(r"/poll$|/images/"), "Pull delivery"),
    (re.compile(r"/delivery-status$|/deliveries/"), "Delivery"),
    (re.compile(r"/keys"), "API keys"),
    (re.compile(r"/webhooks"), "Event webhooks"),
    (re.compile(r"destination"), "Destinations"),
    (re.compile(r"/encryption/"), "Encrypted uploads"),
    (re.compile(r"^/api/v1/(uploads|stats)"), "Uploads and stats"),
    (re.compile(r""), "Upload sessions"),
]


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema with the answers every operation of a kind shares (this module's docstring)."""

    def _get_response_bodies(self, direction: str = "response") -> dict:
        # The operation's own answers (from `@extend_schema`, which overrides get_response_serializers in a subclass
        # of this one), then what every operation of its kind answers too, unless it said otherwise.
        responses = super()._get_response_bodies(direction)
        for (status, media_type), response in _implied_errors(self.view, self.method, self.path).items():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(response, str(status), [media_type], direction)
        if isinstance(self.view, RateLimitedView):
            for status, response in responses.items():
                response.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
                if status == "429":
                    response["headers"]["Retry-After"] = RETRY_AFTER_HEADER
        return dict(sorted(responses.items()))

    def get_auth(self) -> list[dict]:
        if getattr(self.view, "takes_session_password", False):
            # Optional: only a password-protected session needs it (docs/api.md "Session password").
            return [{}, {"sessionPassword": []}]
        return super().get_auth()

    def get_tags(self) -> list[str]:
        """Operations grouped as docs/api.md groups them, first matching rule wins."""
        return [next(tag for pattern, tag in TAGS if pattern.search(self.path))]

    def get_serializer_name(self, serializer: serializers.Serializer, direction: str) -> str:
        """A view's nested `Input` is named after the view: `SessionCreateView.Input` → `SessionCreate`."""
        qualified = type(serializer).__qualname__
        if qualified.endswith("View.Input"):
            return qualified.removesuffix("View.Input")
        return super().get_serializer_name(serializer, direction)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apertur.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "aptr_live_… or aptr_test_…",
            "description": (
                'A project\'s API key (docs/api.md "Authentication"). A key with a signing secret also sends '
                '`X-Aptr-Timestamp` and `X-Aptr-Signature` (docs/api.md "Request signing").'
            ),
        }


class ApiKeyOrQueryTokenScheme(OpenApiAuthenticationExtension):
    """The key in `Authorization` (the `apiKey` scheme) or in `?token=` (docs/api.md "Server-Sent Events")."""

    target_class = "apertur.api.authentication.ApiKeyOrQueryTokenAuthentication"
    name = "apiKeyQuery"

    def get_security_requirement(self, auto_schema: AutoSchema) -> list[dict]:
        return [{"apiKey": []}, {"apiKeyQuery": []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> dict:
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The API key in the query, for clients that cannot set headers (a browser's EventSource).",
        }


class DashboardSessionScheme(OpenApiAuthenticationExtension):
    """A signed-in dashboard user's browser session (docs/api.md "Dashboard access")."""

    target_class = "apertur.api.authentication.DashboardSessionAuthentication"
    name = "dashboardSession"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": (
                "A signed-in dashboard user's session cookie, for a project they are a member of, named by "
                "`X-Aptr-Project: <project id>` (or `?project=` on an event stream); writes also send the "
                '`csrftoken` cookie\'s value as `X-CSRFToken` (docs/api.md "Dashboard access").'
            ),
        }


def api_v1_only(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """PREPROCESSING_HOOKS: the schema describes /api/v1 only (not the phone page, the admin or the OAuth pages)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


def describe_parameters(result: dict, **kwargs: Any) -> dict:
    """POSTPROCESSING_HOOKS: what every parameter of a kind means here.

    - A path parameter is one path segment (`<str:…>` matches no `/`).
    - An optional query parameter sent empty (`?borderColor=`) counts as not sent, as DRF reads a query string
      (like a form) and as the views that wait say (they drop empty values).
    """
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", ()):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "string" and "pattern" not in schema:
                    schema["pattern"] = "^[^/]+$"
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result
