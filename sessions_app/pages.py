"""The phone upload page at a session's upload_url, `/u/<session_id>` (docs/upload-page.md).

Server-rendered and complete without JavaScript for one photo at a time: the password gate, a plain form post
of one file and "Done" are forms handled here, through the same services as the API (`image_receive`,
`session_password_verify`, `session_complete`). With JavaScript (static/upload/upload.js) the page uploads
through the public API instead, several files at once, and shows delivery live from the session's event stream.

A GET only reads: an open session past its expiry is shown as expired without being closed (the sweeper closes
it within seconds).
"""

import re
from functools import partial
from urllib.parse import urlencode

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.datastructures import MultiValueDict
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from apertur.api.authentication import client_ip
from apertur.errors import AppError
from sessions_app import page_words, passwords, receiving, services
from sessions_app.models import Image, UploadSession
from sessions_app.page_assets import page_script, page_style
from sessions_app.page_security import page_headers
from sessions_app.status import Status, displayed_status
from sessions_app.uploads import MEBIBYTE, UploadContent, UploadLimits, read_upload_body

# Codes whose answer is about the session, not the file: the page becomes the friendly page of that state.
SESSION_STATE_CODES = {"NOT_FOUND": "not_found", "SESSION_EXPIRED": "expired", "SESSION_CLOSED": "closed"}
IMAGE_ID = re.compile(r"img_[0-9A-Z]{26}")


def page_view(view):
    """What every page answer gets: its language, no caching, the security headers, and the frame policy of
    docs/upload-page.md instead of the site-wide X-Frame-Options."""

    @never_cache
    @xframe_options_exempt
    @csrf_exempt  # each POST checks its CSRF token itself, once the body is read (`_csrf_rejected`)
    def wrapped(request: HttpRequest, session_id: str) -> HttpResponse:
        # PostgreSQL refuses a NUL character in a text query, and no id has one.
        session = None if "\x00" in session_id else UploadSession.objects.filter(pk=session_id).first()
        with translation.override(page_words.language_of(request)):
            try:
                response = view(request, session_id, session)
            except (MultiPartParserError, SuspiciousOperation, RequestDataTooBig):
                # A hostile or broken form body (Django refuses it while reading): the friendly page, not JSON.
                response = _state_page(request, session, "bad_request")
        return page_headers(response, session=session)

    return wrapped


@page_view
def upload_page(request: HttpRequest, session_id: str, session: UploadSession | None) -> HttpResponse:
    """GET: the page for the session's state. POST: one photo from the plain form (no JavaScript)."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    if session is None:
        return _state_page(request, None, "not_found")
    if request.method == "POST":
        return _receive_form_upload(request, session)
    state = page_state(session)
    received = _received_image(request, session)
    if state == "closed" and ("done" in request.GET or received is not None):
        return _state_page(request, session, "thanks")  # the user just finished: thanks, not "finished"
    if state != "open":
        return _state_page(request, session, state)
    try:
        _ensure_page_password(request, session)
    except AppError as error:
        return _password_page(request, session, error=None if error.code == "PASSWORD_REQUIRED" else error)
    return _open_page(request, session, received=received)


def _received_image(request: HttpRequest, session: UploadSession) -> Image | None:
    """The image a plain form post just sent (`?received=<image id>`, the redirect after it), of this session."""
    image_id = request.GET.get("received", "")
    if not IMAGE_ID.fullmatch(image_id):
        return None
    return Image.objects.filter(session=session, pk=image_id).first()


def _back_to_page(request: HttpRequest, session_id: str) -> HttpResponse:
    """A GET of a form's address (a restored tab, a shared link): the page itself."""
    response = HttpResponseRedirect(_with_page_params(request, reverse("upload-page", args=[session_id])))
    response.status_code = 303
    return response


def upload_page_slash(request: HttpRequest, session_id: str) -> HttpResponse:
    """`/u/<id>/`: chat apps and hand-typed links add a slash."""
    return _back_to_page(request, session_id)


@page_view
def password_form(request: HttpRequest, session_id: str, session: UploadSession | None) -> HttpResponse:
    """POST of the password gate's form: the signed cookie and back to the page, or the gate with the error."""
    if request.method in ("GET", "HEAD"):
        return _back_to_page(request, session_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if session is None:
        return _state_page(request, None, "not_found")
    if _csrf_rejected(request, request.POST):
        return _state_page(request, session, "form_expired")
    try:
        valid = passwords.session_password_verify(
            session=session, password=request.POST.get("password", "")[:128], ip=client_ip(request)
        )
    except AppError as error:
        return _password_page(request, session, error=error)
    if not valid:
        return _password_page(request, session, error=AppError(401, "INVALID_PASSWORD", ""))
    response = HttpResponseRedirect(_page_url(request, session))
    response.status_code = 303
    passwords.password_cookie_set(response, session)
    return response


@page_view
def done_form(request: HttpRequest, session_id: str, session: UploadSession | None) -> HttpResponse:
    """POST of the "Done" form: complete the session, then the thank-you page."""
    if request.method in ("GET", "HEAD"):
        return _back_to_page(request, session_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if session is None:
        return _state_page(request, None, "not_found")
    if _csrf_rejected(request, request.POST):
        return _state_page(request, session, "form_expired")
    try:
        _ensure_page_password(request, session)
        services.session_complete(session=session)
    except AppError as error:
        return _error_page(request, session, error)
    response = HttpResponseRedirect(_page_url(request, session, done="1"))
    response.status_code = 303
    return response


def page_state(session: UploadSession) -> str:
    """open, expired or closed, as the phone user sees the session now."""
    status = displayed_status(session)
    if status == Status.EXPIRED or (session.closed_at is None and session.expires_at <= timezone.now()):
        return "expired"
    if session.closed_at is not None:
        return "closed"
    return "open"


# --- the plain form post ----------------------------------------------------------------------------


def _receive_form_upload(request: HttpRequest, session: UploadSession) -> HttpResponse:
    try:
        image = receiving.image_receive(
            session_id=session.pk,
            read_body=partial(_read_form_body, request),
            encryption_scheme=None,
            password=None,
            password_cookie=passwords.password_cookie_read(request, session.pk),
            ip=client_ip(request),
        )
    except AppError as error:
        return _error_page(request, session, error)
    # Post/redirect/get: reloading the result page does not send the photo again.
    response = HttpResponseRedirect(_page_url(request, session, received=image.pk))
    response.status_code = 303
    return response


def _read_form_body(request: HttpRequest, limits: UploadLimits) -> UploadContent:
    """The form's body, read like an API upload's (streamed, the size enforced), then its CSRF token checked:
    Django's middleware would read the body before the session's rules and without the size limit."""
    content = read_upload_body(request, limits)
    if _csrf_rejected(request, content.form):
        content.close()
        raise AppError(403, "CSRF_FAILED", "The form has expired.")
    return content


def _csrf_rejected(request: HttpRequest, form: QueryDict | None) -> bool:
    """Whether Django's CSRF check refuses this POST, with `form` as the posted fields."""
    request._post = form if form is not None else QueryDict()
    request._files = MultiValueDict()
    return CsrfViewMiddleware(lambda _: HttpResponse()).process_view(request, None, (), {}) is not None


# --- rendering --------------------------------------------------------------------------------------


def _error_page(request: HttpRequest, session: UploadSession, error: AppError) -> HttpResponse:
    """A refused form: the session's own page when the refusal is about the session, else the upload page with
    the refusal in words, with the refusal's status."""
    if error.code == "CSRF_FAILED":
        return _state_page(request, session, "form_expired")
    if error.code in SESSION_STATE_CODES:
        return _state_page(request, session, SESSION_STATE_CODES[error.code])
    if error.code in ("PASSWORD_REQUIRED", "INVALID_PASSWORD", "TOO_MANY_PASSWORD_ATTEMPTS") and not (
        error.code == "TOO_MANY_PASSWORD_ATTEMPTS" and _has_valid_cookie(request, session)
    ):
        return _password_page(request, session, error=None if error.code == "PASSWORD_REQUIRED" else error)
    session.refresh_from_db()
    response = _open_page(request, session, error=page_words.error_in_words(error, session), status=error.status)
    for name, value in (error.headers or {}).items():
        response[name] = value
    return response


def _ensure_page_password(request: HttpRequest, session: UploadSession) -> None:
    """The page's own requests carry the password as the signed cookie the gate gave, never as a header."""
    cookie = passwords.password_cookie_read(request, session.pk)
    passwords.ensure_password(session=session, password=None, cookie=cookie, ip=client_ip(request))


def _has_valid_cookie(request: HttpRequest, session: UploadSession) -> bool:
    cookie = passwords.password_cookie_read(request, session.pk)
    return cookie is not None and cookie == passwords.password_cookie_value(session)


def _open_page(
    request: HttpRequest,
    session: UploadSession,
    *,
    received: Image | None = None,
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        **_common_context(request, session),
        "received": received,
        "error": error,
        "counter": page_words.counter(session.images_count, session.max_images),
        "full": session.images_count >= session.max_images,
        "accept": ",".join(session.allowed_mime_types),
        "types_in_words": page_words.types_in_words(session.allowed_mime_types),
        "max_size_mb": session.effective_max_image_size_mb,
        "page_config": page_config(request, session),
    }
    return render(request, "sessions_app/upload_page.html", context, status=status)


def _password_page(request: HttpRequest, session: UploadSession, *, error: AppError | None) -> HttpResponse:
    message = page_words.error_in_words(error, session) if error is not None else None
    status = error.status if error is not None else 200
    context = {
        **_common_context(request, session),
        "error": message,
        "locked": error is not None and error.code == "TOO_MANY_PASSWORD_ATTEMPTS",
        "password_url": _with_page_params(request, reverse("upload-page-password", args=[session.pk])),
        "page_config": page_config(request, session),
    }
    response = render(request, "sessions_app/upload_password.html", context, status=status)
    for name, value in ((error.headers or {}) if error is not None else {}).items():
        response[name] = value
    return response


STATE_STATUS = {
    "not_found": 404,
    "expired": 410,
    "closed": 409,
    "form_expired": 403,
    "bad_request": 400,
    "thanks": 200,
}


def _state_page(request: HttpRequest, session: UploadSession | None, state: str) -> HttpResponse:
    context = {
        **(_common_context(request, session) if session is not None else _language_context(request)),
        "state": state,
        "images_count": session.images_count if session is not None else 0,
    }
    return render(request, "sessions_app/upload_state.html", context, status=STATE_STATUS[state])


def _language_context(request: HttpRequest) -> dict:
    return {
        "page_style": page_style().text,
        "page_script": page_script().text,
        "language": translation.get_language(),
        "color_scheme": page_words.color_scheme_of(request),
        "page_params": _page_params(request),
    }


def _common_context(request: HttpRequest, session: UploadSession) -> dict:
    return {
        **_language_context(request),
        "session": session,
        "page_url": _page_url(request, session),
        "done_url": _with_page_params(request, reverse("upload-page-done", args=[session.pk])),
        "password_protected": session.password_protected,
    }


def page_config(request: HttpRequest, session: UploadSession) -> dict:
    """What the page's script needs, as JSON in the page (a `json_script`, so no inline script runs)."""
    return {
        "sessionId": session.pk,
        "language": translation.get_language(),
        "imagesCount": session.images_count,
        "maxImages": session.max_images,
        "allowedMimeTypes": session.allowed_mime_types,
        "maxImageSizeBytes": session.effective_max_image_size_mb * MEBIBYTE,
        "maxImageDimension": session.max_image_dimension,
        "destinationsCount": session.destinations.alive().filter(is_active=True).count(),
        "passwordProtected": session.password_protected,
        "maxParallelUploads": 3,
        "urls": {
            "images": reverse("sessions_app:upload-images", args=[session.pk]),
            "complete": reverse("sessions_app:upload-complete", args=[session.pk]),
            "events": reverse("sessions_app:upload-events", args=[session.pk]),
            "verifyPassword": reverse("sessions_app:upload-verify-password", args=[session.pk]),
        },
        "words": page_words.script_words(session),
    }


def _page_params(request: HttpRequest) -> dict[str, str]:
    """The page's own query parameters that survive a form post: its language and colour scheme."""
    return {name: request.GET[name] for name in ("lang", "colorScheme") if request.GET.get(name)}


def _with_page_params(request: HttpRequest, path: str, **extra: str) -> str:
    query = {**_page_params(request), **extra}
    return f"{path}?{urlencode(query)}" if query else path


def _page_url(request: HttpRequest, session: UploadSession, **extra: str) -> str:
    return _with_page_params(request, reverse("upload-page", args=[session.pk]), **extra)
