"""API authentication (docs/api.md "Authentication", "Request signing", "Dashboard access"): bearer keys, IP and
domain allow-lists, optional request signing; and signed-in dashboard users calling the API with their browser
session for one project they belong to."""

import hashlib
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass
from importlib import import_module
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import auth
from django.utils import timezone
from rest_framework import exceptions as drf_exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.request import Request

from apertur.errors import AppError
from projects.models import ApiKey, Membership, Project, key_digest
from projects.selectors import membership_for
from projects.services import api_key_mark_used

logger = logging.getLogger(__name__)
SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class KeyPrincipal:
    """`request.user` for API-key requests: the key and the one project it may see."""

    api_key: ApiKey

    @property
    def project(self) -> Project:
        return self.api_key.project

    @property
    def rate_limit_identity(self) -> str:
        return str(self.api_key.pk)

    def still_allowed(self) -> bool:
        """For a long stream: the key still works (not revoked or paused since the stream opened)."""
        return ApiKey.objects.filter(pk=self.api_key.pk, is_active=True).exists()

    is_authenticated = True


@dataclass(frozen=True)
class DashboardPrincipal:
    """`request.user` for a signed-in dashboard user calling the API (`D` in docs/api.md "Conventions"): the user
    and their membership of the one project the request names. There is no key: `request.auth` is None."""

    membership: Membership
    session_key: str | None = None  # the browser session's, to look again during a long stream

    @property
    def user(self):
        return self.membership.user

    @property
    def project(self) -> Project:
        return self.membership.project

    @property
    def rate_limit_identity(self) -> str:
        return f"user:{self.membership.user_id}"

    def still_allowed(self) -> bool:
        """For a long stream: the user is still signed in with that browser session and still a member."""
        store = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key)
        signed_in = store.get(auth.SESSION_KEY) == str(self.membership.user_id)
        return signed_in and Membership.objects.filter(pk=self.membership.pk, user__is_active=True).exists()

    api_key = None
    is_authenticated = True


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _ip_allowed(address: str, allowed: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(allowed))


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The allow-list's valid entries; a malformed one (typed in the admin) matches nothing rather than
    failing every request made with the key."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            logger.warning("API key allow-list entry %r is not an IP or CIDR; ignored", entry)
    return networks


def host_of(value: str) -> str:
    """The lower-case host name of an Origin/Referer header or an allowedDomains entry (URL or bare host)."""
    try:
        return (urlsplit(value if "://" in value else f"//{value}").hostname or "").rstrip(".")
    except ValueError:
        return ""


def _domain_allowed(request: Request, allowed: list[str]) -> bool:
    """allowedDomains is checked against Origin, else Referer, when the request carries one (docs/api.md
    "Authentication").

    An entry matches its host exactly; `*.example.com` matches any subdomain of example.com.
    """
    sent = request.META.get("HTTP_ORIGIN") or request.META.get("HTTP_REFERER")
    if not sent:
        return True
    host = host_of(sent)
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith("." + host_of(entry[2:])):
                return True
        elif host and host == host_of(entry):
            return True
    return False


def request_signature(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    base = f"{timestamp}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}"
    return "sha256=" + hmac.new(secret.encode(), base.encode(), hashlib.sha256).hexdigest()


def _verify_signature(request: Request, secret: str) -> None:
    timestamp = request.META.get("HTTP_X_APTR_TIMESTAMP", "")
    signature = request.META.get("HTTP_X_APTR_SIGNATURE", "")
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if (
        not (timestamp.isascii() and timestamp.isdigit())
        or abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS
    ):
        raise AppError(401, "INVALID_SIGNATURE", "Missing or stale X-Aptr-Timestamp for a signing key.")
    path = request._request.get_full_path()
    expected = request_signature(secret, timestamp, request.method, path, request._request.body)
    # Bytes: compare_digest refuses str with non-ASCII characters, which a client can send in a header.
    if not hmac.compare_digest(expected.encode(), signature.encode(errors="replace")):
        raise AppError(401, "INVALID_SIGNATURE", "The request signature does not match.")


def _is_multipart_upload(request: Request) -> bool:
    """Multipart bodies are exempt from signing (docs/api.md "Request signing"): clients cannot see the bytes their
    library frames.

    Only where the view really takes multipart: a declared content type alone must not switch signing off.
    """
    return request.content_type.startswith("multipart/") and any(
        parser.media_type.startswith("multipart/") for parser in request.parsers
    )


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        header = get_authorization_header(request).decode(errors="replace")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            return None
        return self.authenticate_key(request, token)

    def authenticate_key(self, request: Request, token: str) -> tuple[KeyPrincipal, ApiKey]:
        api_key = (
            ApiKey.objects.select_related("project").filter(digest=key_digest(token.strip()), is_active=True).first()
        )
        if api_key is None:
            raise AppError(401, "AUTHENTICATION_FAILED", "Unknown or inactive API key.")
        if api_key.allowed_ips and not _ip_allowed(client_ip(request), api_key.allowed_ips):
            raise AppError(403, "IP_NOT_ALLOWED", "This API key may not be used from this address.")
        if api_key.allowed_domains and not _domain_allowed(request, api_key.allowed_domains):
            raise AppError(403, "FORBIDDEN", "This API key may not be used from this origin.")
        if api_key.signing_secret and not _is_multipart_upload(request):
            _verify_signature(request, api_key.signing_secret)
        api_key_mark_used(api_key=api_key, now=timezone.now())
        return KeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class ApiKeyOrQueryTokenAuthentication(ApiKeyAuthentication):
    """The header, or `?token=<key>` for clients that cannot set headers (a browser's EventSource). The query is
    redacted from access logs (apertur.request_logging.RedactTokens)."""

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        found = super().authenticate(request)
        token = request.query_params.get("token", "")
        if found is None and token.strip():
            return self.authenticate_key(request, token)
        return found


PROJECT_HEADER = "HTTP_X_APTR_PROJECT"


def _signed_in_user(django_request):
    """The request's user, as Django's session and authentication middleware would give it. The views that wait
    run without middleware (apertur/api/waiting.py), so there the session is read from its cookie here, in the
    pool thread the view runs in."""
    if not hasattr(django_request, "user"):
        if not hasattr(django_request, "session"):
            store = import_module(settings.SESSION_ENGINE).SessionStore
            django_request.session = store(django_request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        django_request.user = auth.get_user(django_request)
    return django_request.user


class DashboardSessionAuthentication(SessionAuthentication):
    """A signed-in dashboard user's browser session (docs/api.md "Dashboard access").

    Used only when the request carries no API key. The project comes from `X-Aptr-Project`, or from
    `?project=` on the one view that says `project_from_query` (the event stream: EventSource cannot set
    headers). A project the user is not a member of is
    404, like any other project a caller cannot see. Writes need Django's CSRF token (`X-CSRFToken`).
    """

    def authenticate(self, request: Request) -> tuple[DashboardPrincipal, None] | None:
        # A key request is the key's. Another scheme (a proxy's Basic authentication) leaves the cookie to speak.
        scheme = get_authorization_header(request).decode(errors="replace").partition(" ")[0]
        if scheme.lower() == "bearer" or request.query_params.get("token", "").strip():
            return None
        user = _signed_in_user(request._request)
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        try:
            self.enforce_csrf(request)
        except drf_exceptions.PermissionDenied as refusal:
            raise AppError(
                403, "CSRF_FAILED", "Missing or wrong CSRF token: send the csrftoken cookie's value as X-CSRFToken."
            ) from refusal
        project_id = request.META.get(PROJECT_HEADER, "")
        view = request.parser_context.get("view") if request.parser_context else None
        if not project_id and getattr(view, "project_from_query", False):
            # Only where a browser cannot set headers: elsewhere the header is what a cross-site link or form
            # cannot send, and so what keeps another site from making a signed-in browser call a GET.
            project_id = request.query_params.get("project", "")
        if not project_id.strip():
            raise AppError(
                400,
                "PROJECT_REQUIRED",
                "Name the project: send X-Aptr-Project: <project id> (or ?project=<id> on an event stream).",
            )
        membership = membership_for(user=user, project_id=project_id.strip())
        return DashboardPrincipal(membership, session_key=request._request.session.session_key), None

    def authenticate_header(self, request: Request) -> str | None:
        return None
