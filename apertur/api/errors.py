"""The handler that renders every error as the envelope of docs/api.md ("Errors")."""

from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from apertur.errors import AppError

# RFC 9110's names, which Python adopted only in 3.13: the envelope must not change with the interpreter.
_REASON_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase of the `error` field (docs/api.md "Errors")."""
    return _REASON_PHRASES.get(status) or HTTPStatus(status).phrase


def error_body(status: int, code: str, message: str, fields: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": message,
        "code": code,
        "statusCode": status,
        "error": reason_phrase(status),
    }
    if fields:
        body["fields"] = fields
    return body


def error_response(status: int, code: str, message: str, **kwargs) -> JsonResponse:
    return JsonResponse(error_body(status, code, message, **kwargs), status=status)


def _flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF nests errors (lists of dicts for list items); the envelope wants `name: [messages]`."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(_flatten_fields(value, name))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_flatten_fields(item, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "non_field_errors": [str(detail)]}


def _app_error_from(exception: Exception) -> AppError | None:
    if isinstance(exception, AppError):
        return exception
    if isinstance(exception, drf_exceptions.ValidationError):
        fields = _flatten_fields(exception.detail)
        first = next(iter(fields.items()), ("", ["Invalid input."]))
        message = f"{first[0]}: {first[1][0]}" if first[0] and first[0] != "non_field_errors" else first[1][0]
        return AppError(400, "VALIDATION_ERROR", message, fields=fields)
    if isinstance(exception, drf_exceptions.ParseError):
        return AppError(400, "VALIDATION_ERROR", f"Malformed request body: {exception.detail}")
    if isinstance(exception, drf_exceptions.AuthenticationFailed | drf_exceptions.NotAuthenticated):
        # A 401 must name the scheme (RFC 9110 §15.5.2); DRF puts it on the exception for its own handler.
        scheme = getattr(exception, "auth_header", None)
        headers = {"WWW-Authenticate": scheme} if scheme else None
        return AppError(401, "AUTHENTICATION_FAILED", str(exception.detail), headers=headers)
    if isinstance(exception, drf_exceptions.PermissionDenied | DjangoPermissionDenied):
        return AppError(403, "FORBIDDEN", "You do not have permission to do this.")
    if isinstance(exception, drf_exceptions.NotFound | Http404):
        return AppError(404, "NOT_FOUND", "Not found.")
    if isinstance(exception, drf_exceptions.MethodNotAllowed):
        return AppError(405, "METHOD_NOT_ALLOWED", str(exception.detail))
    if isinstance(exception, drf_exceptions.UnsupportedMediaType):
        return AppError(415, "UNSUPPORTED_MEDIA_TYPE", str(exception.detail))
    if isinstance(exception, drf_exceptions.Throttled):
        wait = int(exception.wait or 1)
        return AppError(429, "RATE_LIMITED", "Too many requests.", headers={"Retry-After": str(max(wait, 1))})
    if isinstance(exception, drf_exceptions.APIException):
        status = exception.status_code
        return AppError(status, HTTPStatus(status).name, str(exception.detail))
    return None


def exception_handler(exception: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: known errors become the envelope; anything else stays a 500 (logged)."""
    error = _app_error_from(exception)
    if error is None:
        return None
    response = Response(error_body(error.status, error.code, error.message, error.fields), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def handler404(request, exception=None) -> JsonResponse:
    return error_response(404, "NOT_FOUND", "Not found.")


def handler500(request) -> JsonResponse:
    return error_response(500, "INTERNAL_ERROR", "Something went wrong on our side; it has been logged.")


def handler400(request, exception=None) -> JsonResponse:
    # Django answers every SuspiciousOperation through here; a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413.
    if isinstance(exception, RequestDataTooBig):
        return error_response(413, "FILE_TOO_LARGE", "The request body is too large.")
    return error_response(400, "VALIDATION_ERROR", "Bad request.")


def handler403(request, exception=None) -> JsonResponse:
    return error_response(403, "FORBIDDEN", "Forbidden.")
