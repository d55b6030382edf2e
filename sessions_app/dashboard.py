"""A project's upload sessions in the dashboard (docs/dashboard.md "Pages"): the filterable list, a session made from a
form, and a session's detail with its QR code, thumbnails and live delivery matrix (image by destination) with Retry.

Views are thin: input is checked by the API's own serializers (sessions_app/api.py), writes go through the same
services as the API (`session_create`, `session_complete`, `delivery_retry`), so pages and API give the same
messages. Every member of the project may read, create, close and retry; anyone else gets 404.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from apertur.api import throttling
from apertur.errors import AppError
from apertur.ids import parse_uuid
from apertur.pages import refusal_page
from delivery import selectors as delivery_selectors
from delivery import services as delivery_services
from delivery.models import Delivery
from destinations.models import Destination
from projects import selectors as project_selectors
from projects.models import ALL_MIME_TYPES, ApiKey, Project
from sessions_app import documents, qr, selectors, services, thumbnails
from sessions_app.api import SessionCreateView, SessionUpdateView
from sessions_app.models import UploadSession
from sessions_app.status import displayed_status

PAGE_SIZE = 25
QR_PIXELS = 240

PageView = Callable[..., HttpResponse]


def _refusals_as_pages(view: PageView) -> PageView:
    """An AppError becomes a plain page with its status and message (apertur.pages.refusal_page), never a 500."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except AppError as error:
            return refusal_page(request, error)

    return wrapper


def _project(request: HttpRequest, project_id: str) -> Project:
    """A project the signed-in user is a member of (any role); anything else is 404."""
    return project_selectors.membership_for(user=request.user, project_id=project_id).project


def _session(request: HttpRequest, project_id: str, session_id: str) -> UploadSession:
    return selectors.session_for_project(project=_project(request, project_id), session_id=session_id)


def _messages(found: Any) -> list[str]:
    """DRF's errors of one field as sentences; a list field's are by item (`{1: ["…"]}`), said as "item 2: …"."""
    if isinstance(found, dict):
        return [f"item {int(index) + 1}: {message}" for index, items in found.items() for message in _messages(items)]
    if isinstance(found, list):
        return [message for item in found for message in _messages(item)]
    return [str(found)]


# --- the list -------------------------------------------------------------------------------------------------


class SessionFilterForm(forms.Form):
    """The list's GET parameters; a bad one is a message next to its field, never a 500."""

    status = forms.ChoiceField(required=False, choices=[("", "any"), *UploadSession.Status.choices])
    tag = forms.CharField(required=False, max_length=128, strip=False)
    created_from = forms.DateField(required=False, label="Created from")
    created_to = forms.DateField(required=False, label="Created until")
    key = forms.CharField(required=False, label="API key")
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)

    def __init__(self, data: Any, *, keys: list[ApiKey]) -> None:
        super().__init__(data)
        self.keys = keys

    def clean_key(self) -> str:
        value = self.cleaned_data["key"]
        if value in ("", selectors.NO_KEY):
            return value
        key = parse_uuid(value)
        if key is None or key not in {api_key.pk for api_key in self.keys}:
            raise forms.ValidationError("Not an API key of this project.")
        return str(key)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end of the range is before its start.")
        return cleaned

    def filters(self) -> selectors.SessionFilters:
        """The valid parameters as filters (a refused one filters nothing)."""
        valid = {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
        return selectors.SessionFilters(
            status=valid.get("status") or None,
            tag=valid.get("tag") or None,
            created_from=valid.get("created_from"),
            created_to=valid.get("created_to"),
            api_key_id=valid.get("key") or None,
        )


@require_safe
@login_required
@_refusals_as_pages
def session_list(request: HttpRequest, project_id: str) -> HttpResponse:
    project = _project(request, project_id)
    keys = project_selectors.keys_for_project(project=project)
    form = SessionFilterForm(request.GET, keys=keys)
    form.is_valid()
    page = form.cleaned_data.get("page") or 1  # a refused field is not in cleaned_data
    rows, total = selectors.session_summary_rows(
        project=project, filters=form.filters(), offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "sessions_app/dashboard_list.html",
        {
            "project": project,
            "form": form,
            "keys": keys,
            "no_key": selectors.NO_KEY,
            "statuses": UploadSession.Status.values,
            "rows": [(row, displayed_status(row.session)) for row in rows],
            "total": total,
            "page": page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page * PAGE_SIZE < total else None,
            "query": query.urlencode(),
        },
        status=400 if form.errors else 200,
    )


# --- a new session ----------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _create_body(form: Any) -> dict[str, Any]:
    """The form as the API's JSON body (docs/api.md "Creating a session"): the same checks, the same messages.
    An empty field is left out, so the key's or the project's default applies, as in the API."""
    body: dict[str, Any] = {"label": form.get("label", ""), "long_polling": form.get("long_polling") == "on"}
    for name in ("expires_in_hours", "max_images", "max_image_dimension"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    if form.get("password", ""):
        body["password"] = form["password"]
    if tags := _lines(form.get("tags", "")):
        body["tags"] = tags
    if destination_ids := form.getlist("destination_ids"):
        body["destination_ids"] = destination_ids  # none ticked: the key's default destinations
    mime_types = form.getlist("allowed_mime_types")
    if set(mime_types) != set(ALL_MIME_TYPES):
        body["allowed_mime_types"] = mime_types  # none ticked is refused, as the API refuses []
    return body


def _chosen_key(project: Project, value: str) -> ApiKey | None:
    if not value:
        return None
    key = parse_uuid(value)
    api_key = None if key is None else ApiKey.objects.filter(project=project, pk=key, is_active=True).first()
    if api_key is None:
        message = "Not an active API key of this project."
        raise AppError(400, "VALIDATION_ERROR", message, fields={"api_key": [message]})
    return api_key


def _create_page(request: HttpRequest, project: Project, *, status: int = 200, **extra: Any) -> HttpResponse:
    form = extra.get("form") or {}
    return render(
        request,
        "sessions_app/dashboard_new.html",
        {
            "project": project,
            "destinations": Destination.objects.alive().filter(project=project, is_active=True).order_by("created_at"),
            "keys": ApiKey.objects.filter(project=project, is_active=True).order_by("created_at", "pk"),
            "mime_types": ALL_MIME_TYPES,
            "form": form,
            "errors": {},
            "chosen_destinations": form.getlist("destination_ids") if form else [],
            "chosen_mime_types": form.getlist("allowed_mime_types") if form else list(ALL_MIME_TYPES),
            **extra,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def session_new(request: HttpRequest, project_id: str) -> HttpResponse:
    project = _project(request, project_id)
    if request.method == "GET":
        return _create_page(request, project)
    # The same budget as the API's session create for this user (docs/api.md "Rate limits"): one counter for both.
    throttling.hit(SessionCreateView.rate_limit_scope, f"user:{request.user.pk}")
    payload = SessionCreateView.Input(data=_create_body(request.POST))
    if not payload.is_valid():
        errors = {name: _messages(found) for name, found in payload.errors.items()}
        return _create_page(request, project, status=400, form=request.POST, errors=errors)
    try:
        api_key = _chosen_key(project, request.POST.get("api_key", ""))
        session = services.session_create(api_key=api_key, project=project, **payload.validated_data)
    except AppError as error:
        if error.status != 400:
            raise
        # The API's sentence above the form, and each field's own words next to it.
        errors = {**{name: found for name, found in (error.fields or {}).items() if found}, "form": [error.message]}
        return _create_page(request, project, status=400, form=request.POST, errors=errors)
    messages.success(request, "The session is ready: share its link or QR code.")
    return redirect("session-pages:session-detail", project_id=project.pk, session_id=session.pk)


# --- changing a session -------------------------------------------------------------------------------------


def _update_body(form: Any) -> dict[str, Any]:
    """The edit form as the API's PATCH body (docs/api.md "Updating a session"). An emptied limit is `null` (no
    limit, where the API allows it); the password is kept, replaced or removed as the form says."""
    body: dict[str, Any] = {}
    if form.get("expires_at", "").strip():
        # A datetime-local field has no zone: the dashboard shows and takes UTC.
        body["expires_at"] = form["expires_at"].strip() + "Z"
    if form.get("max_images", "").strip():
        body["max_images"] = form["max_images"].strip()
    for name in ("max_image_dimension", "max_image_size_mb"):
        body[name] = form.get(name, "").strip() or None
    mime_types = form.getlist("allowed_mime_types")
    body["allowed_mime_types"] = mime_types  # none ticked is refused, as the API refuses []
    if form.get("password_change") == "set":
        body["password"] = form.get("password", "")
    elif form.get("password_change") == "remove":
        body["password"] = None
    return body


def _edit_page(request: HttpRequest, project: Project, session: UploadSession, **extra: Any) -> HttpResponse:
    status = extra.pop("status", 200)
    return render(
        request,
        "sessions_app/dashboard_edit.html",
        {
            "project": project,
            "session": session,
            "mime_types": ALL_MIME_TYPES,
            "form": {
                "expires_at": session.expires_at.strftime("%Y-%m-%dT%H:%M"),
                "max_images": session.max_images,
                "max_image_dimension": session.max_image_dimension or "",
                "max_image_size_mb": session.max_image_size_mb or "",
            },
            "chosen_mime_types": session.allowed_mime_types,
            "errors": {},
            **extra,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def session_edit(request: HttpRequest, project_id: str, session_id: str) -> HttpResponse:
    """A session's limits, expiry and password, as PATCH /api/v1/upload-sessions/{id}: any member may."""
    project = _project(request, project_id)
    session = selectors.session_for_project(project=project, session_id=session_id)
    if request.method == "GET":
        return _edit_page(request, project, session)
    refused = {"status": 400, "form": request.POST, "chosen_mime_types": request.POST.getlist("allowed_mime_types")}
    payload = SessionUpdateView.Input(data=_update_body(request.POST), partial=True)
    if not payload.is_valid():
        errors = {name: _messages(found) for name, found in payload.errors.items()}
        return _edit_page(request, project, session, errors=errors, **refused)
    try:
        services.session_update(session=session, changes=payload.validated_data)
    except AppError as error:
        if error.status != 400:
            raise
        errors = {**{name: found for name, found in (error.fields or {}).items() if found}, "form": [error.message]}
        return _edit_page(request, project, session, errors=errors, **refused)
    messages.success(request, "The session is saved.")
    return redirect("session-pages:session-detail", project_id=project.pk, session_id=session.pk)


# --- the detail and its matrix --------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixColumn:
    name: str
    type: str


@dataclass(frozen=True)
class MatrixRow:
    image: delivery_selectors.ImageRow
    cells: list[delivery_selectors.DeliveryRow | None]  # one per column; None where the image has no delivery to it


@dataclass(frozen=True)
class Matrix:
    destinations: list[MatrixColumn]
    rows: list[MatrixRow]
    live: bool  # something may still change: the session is open or a delivery is still to run


def _matrix(session: UploadSession) -> Matrix:
    """Image by destination, from three queries whatever the number of images and destinations."""
    images = delivery_selectors.images_with_deliveries(session=session)
    columns = {
        destination.pk: MatrixColumn(name=destination.name, type=destination.type)
        for destination in selectors.session_destinations(session=session)
    }
    for image in images:
        for delivery in image.deliveries:
            columns.setdefault(
                delivery.destination_id,
                MatrixColumn(name=delivery.destination_name, type=delivery.destination_type),
            )
    rows = []
    for image in images:
        by_destination = {delivery.destination_id: delivery for delivery in image.deliveries}
        rows.append(MatrixRow(image=image, cells=[by_destination.get(key) for key in columns]))
    open_deliveries = any(
        cell is not None and cell.status not in Delivery.TERMINAL for row in rows for cell in row.cells
    )
    is_open = session.closed_at is None and displayed_status(session) != UploadSession.Status.EXPIRED
    return Matrix(destinations=list(columns.values()), rows=rows, live=is_open or open_deliveries)


def _matrix_context(project: Project, session: UploadSession) -> dict[str, Any]:
    return {
        "project": project,
        "session": session,
        "status": displayed_status(session),
        "matrix": _matrix(session),
        "changed": session.last_changed_at.isoformat(),
    }


@require_safe
@login_required
@_refusals_as_pages
def session_detail(request: HttpRequest, project_id: str, session_id: str) -> HttpResponse:
    project = _project(request, project_id)
    session = selectors.session_for_project(project=project, session_id=session_id)
    return render(
        request,
        "sessions_app/dashboard_detail.html",
        {
            **_matrix_context(project, session),
            "upload_url": documents.upload_url(session),
            # The session's event stream, with the dashboard's cookie (docs/api.md "Dashboard access").
            "events_url": f"{reverse('sessions_app:session-events', args=[session.pk])}?project={project.pk}",
            "is_open": session.closed_at is None and displayed_status(session) != UploadSession.Status.EXPIRED,
        },
    )


@require_safe
@login_required
@_refusals_as_pages
def session_matrix(request: HttpRequest, project_id: str, session_id: str) -> HttpResponse:
    """The matrix alone, as HTML, for the detail page's script to swap in. With `?since=<the changed stamp the page
    has>`, 204 when nothing changed since (one query: polling an idle session costs almost nothing)."""
    project = _project(request, project_id)
    session = selectors.session_for_project(project=project, session_id=session_id)
    if request.GET.get("since") == session.last_changed_at.isoformat():
        return HttpResponse(status=204, headers={"Cache-Control": "no-store"})
    response = render(request, "sessions_app/dashboard_matrix.html", _matrix_context(project, session))
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@login_required
@_refusals_as_pages
def session_qr(request: HttpRequest, project_id: str, session_id: str) -> HttpResponse:
    """The QR code of the upload link, drawn by the same code as the API's (sessions_app/qr.py)."""
    session = _session(request, project_id, session_id)
    image, content_type = qr.render_qr(documents.upload_url(session), qr.QrOptions(format="svg", size=QR_PIXELS))
    return HttpResponse(image, content_type=content_type, headers={"Cache-Control": "private, max-age=300"})


@require_safe
@login_required
@_refusals_as_pages
def image_thumbnail(request: HttpRequest, project_id: str, session_id: str, image_id: str) -> HttpResponse:
    """A small JPEG of a staged image, read from staging storage as the pull download reads it. 404 when it cannot
    be made (bytes purged, unreadable): the page shows the file's name instead."""
    session = _session(request, project_id, session_id)
    image = selectors.image_for_session(session=session, image_id=image_id)
    thumbnail = thumbnails.thumbnail_for(image)
    if thumbnail is None:
        raise AppError(404, "NOT_FOUND", "This image has no thumbnail.")
    return HttpResponse(thumbnail, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _wants_fragment(request: HttpRequest) -> bool:
    """The detail page's script posts with this header and refreshes the matrix itself."""
    return request.headers.get("X-Requested-With") == "fetch"


@require_POST
@login_required
@_refusals_as_pages
def session_close(request: HttpRequest, project_id: str, session_id: str) -> HttpResponse:
    """Close the session as the phone's Done does (`session_complete`, as POST /api/v1/upload/{id}/complete)."""
    session = _session(request, project_id, session_id)
    services.session_complete(session=session)
    messages.success(request, "The session is closed: it takes no more photos.")
    return redirect("session-pages:session-detail", project_id=project_id, session_id=session.pk)


@require_POST
@login_required
def delivery_retry(request: HttpRequest, project_id: str, session_id: str, delivery_id: str) -> HttpResponse:
    """A failed delivery back to pending with a fresh attempt budget, as POST …/deliveries/{id}/retry."""
    try:
        session = _session(request, project_id, session_id)
        delivery = delivery_selectors.delivery_for_session(session=session, delivery_id=delivery_id)
        delivery_services.delivery_retry(delivery=delivery)
    except AppError as error:
        if _wants_fragment(request):
            return HttpResponse(error.message, status=error.status, content_type="text/plain; charset=utf-8")
        return refusal_page(request, error)
    if _wants_fragment(request):
        return HttpResponse(status=204)
    messages.success(request, "The delivery is being tried again.")
    detail = reverse("session-pages:session-detail", args=[project_id, session.pk])
    return redirect(f"{detail}#matrix")
