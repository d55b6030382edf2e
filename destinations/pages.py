"""The pages of a project's destinations for signed-in users (docs/dashboard.md "Pages"): the list with each one's
state and buttons (test, pause/resume, delete), the per-type forms that create and edit them, and the OAuth connect
flow (start, callback, disconnect; docs/destinations.md "Connecting an OAuth destination").

Thin: each view reads the request and calls what the API calls — its serializers (destinations/api.py), then
destinations/services.py, or destinations/oauth_connect.py — so a page and the API refuse the same input with the
same messages. Owners and admins change destinations; members see the list; anyone else gets a 404."""

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apertur.errors import AppError
from apertur.ids import parse_uuid
from apertur.pages import refusal_page
from destinations import documents, oauth_connect, page_forms, selectors, services
from destinations.api import DestinationDetailView, DestinationListView
from destinations.backends import BACKENDS
from destinations.models import Destination
from projects import selectors as project_selectors
from projects.models import Membership, Project

PageView = Callable[..., HttpResponse]


def _refusals_as_pages(view: PageView) -> PageView:
    """An AppError of the flow becomes a plain page with its status and message, never a 500 or a JSON body."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except AppError as error:
            if error.code == "OAUTH_NOT_CONFIGURED" and "kind" in kwargs:
                return _not_configured(request, kwargs["kind"], status=error.status)
            return refusal_page(request, error, heading="Not connected")

    return wrapper


def _member_project(request: HttpRequest, project_id: str | None) -> Project:
    """A project the signed-in user is a member of; any other (or a malformed id) is 404."""
    return project_selectors.membership_for(user=request.user, project_id=project_id or "").project


def _member_destination(
    request: HttpRequest, destination_id: str | None, *, kind: str, project: Project | None = None
) -> Destination:
    """A live destination of this type in a project the user is a member of (in `project`, when given)."""
    key = parse_uuid(destination_id or "")
    destinations = Destination.objects.alive().select_related("project")
    if project is not None:
        destinations = destinations.filter(project=project)
    destination = (
        None if key is None else destinations.filter(pk=key, type=kind, project__memberships__user=request.user).first()
    )
    if destination is None:
        raise AppError(404, "NOT_FOUND", "Destination not found.")
    return destination


def _not_configured(request: HttpRequest, kind: str, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "destinations/oauth_not_configured.html",
        {"provider": oauth_connect.provider_status(kind), "env_prefix": f"APERTUR_OAUTH_{kind.upper()}"},
        status=status,
    )


def _membership(request: HttpRequest, project_id: str) -> Membership:
    return project_selectors.membership_for(user=request.user, project_id=project_id)


def _managing(request: HttpRequest, project_id: str) -> Membership:
    """The user's membership of a project whose destinations they may change: an owner's or an admin's."""
    membership = _membership(request, project_id)
    if membership.role not in Membership.MANAGING_ROLES:
        raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can change its destinations.")
    return membership


def _list_redirect(project: Project) -> HttpResponse:
    return redirect("destination-pages:destination-list", project_id=project.pk)


def _status(destination: Destination) -> tuple[str, str]:
    """(words, badge class) of a destination's state."""
    if destination.needs_reconnect:
        return "needs reconnecting", "badge-bad"
    if not destination.is_active:
        return "paused", "badge-muted"
    return "active", "badge-ok"


@require_GET
@login_required
@_refusals_as_pages
def destination_list(request: HttpRequest, project_id: str) -> HttpResponse:
    """The project's destinations: a fixed number of queries (the membership with its project, the destinations)
    whatever their number; the OAuth providers' state comes from the settings."""
    membership = _membership(request, project_id)
    oauth_types = oauth_connect.oauth_types()
    rows = []
    for destination in selectors.destinations_for_project(project=membership.project):
        status, badge = _status(destination)
        rows.append(
            {
                "destination": destination,
                "type_name": page_forms.type_name(destination.type),
                "mark": page_forms.type_mark(destination.type),
                "oauth": destination.type in oauth_types,
                "status": status,
                "badge": badge,
            }
        )
    return render(
        request,
        "destinations/list.html",
        {
            "project": membership.project,
            "rows": rows,
            "providers": [oauth_connect.provider_status(kind) for kind in oauth_types],
            "can_manage": membership.role in Membership.MANAGING_ROLES,
        },
    )


def _form_page(
    request: HttpRequest,
    project: Project,
    kind: str,
    *,
    destination: Destination | None = None,
    values: dict[str, str] | None = None,
    name: str = "",
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    fields = page_forms.form_fields(kind)
    errors = errors or {}
    stored = set((destination.secrets or {}) if destination else ())
    values = values or {}
    return render(
        request,
        "destinations/form.html",
        {
            "project": project,
            "kind": kind,
            "type_name": page_forms.type_name(kind),
            "oauth": page_forms.is_oauth(kind),
            "destination": destination,
            "name": name,
            "fields": [
                {
                    "spec": field,
                    "value": values.get(field.name, ""),
                    "errors": errors.get(field.name, []),
                    "stored": field.name in stored,
                }
                for field in fields
            ],
            "name_errors": errors.get("name", []),
            "form_errors": errors.get("form", []),
        },
        status=status,
    )


def _typed_values(kind: str, form: Any) -> dict[str, str]:
    """What a refused form had in its plain fields, to show it again; never its secrets."""
    return {field.name: form.get(field.name, "") for field in page_forms.form_fields(kind) if not field.secret}


@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def destination_new(request: HttpRequest, project_id: str) -> HttpResponse:
    """GET: the type chooser, or with `?type=` that type's form (an OAuth type: its connect page). POST: create,
    through the API's serializer and `services.destination_create`."""
    membership = _managing(request, project_id)
    project = membership.project
    fields = request.POST if request.method == "POST" else request.GET
    kind = fields.get("type", "")
    if not kind and request.method == "GET":
        return render(request, "destinations/choose.html", {"project": project, "types": page_forms.type_choices()})
    if kind not in BACKENDS:
        raise AppError(404, "NOT_FOUND", "There is no destination type of that name.")
    if page_forms.is_oauth(kind):
        start = reverse("destination-pages:oauth-start", args=[kind])
        return redirect(f"{start}?{urlencode({'project': str(project.pk)})}")
    if request.method == "GET":
        return _form_page(request, project, kind)
    name = fields.get("name", "").strip()
    config, problems = page_forms.config_from_form(kind, fields, patch=False)
    payload = DestinationListView.Input(data={"type": kind, "name": name, "config": config})
    try:
        _check(payload, problems)
        destination = services.destination_create(project=project, **payload.validated_data)
    except AppError as error:
        if error.status != 400:
            raise
        errors = page_forms.errors_by_field(error.fields, error.message, kind=kind)
        values = _typed_values(kind, fields)
        return _form_page(request, project, kind, values=values, name=name, errors=errors, status=400)
    messages.success(request, f"{destination.name} is saved. Send it a test image to check it works.")
    return _list_redirect(project)


def _check(payload: Any, problems: dict[str, list[str]]) -> None:
    """The API's serializer's refusals and the form's own (a header line without a colon …) as one 400."""
    valid = payload.is_valid()
    if problems or not valid:
        found = {name: [str(message) for message in errors] for name, errors in payload.errors.items()}
        found |= {f"config.{name}": errors for name, errors in problems.items()}
        raise AppError(400, "VALIDATION_ERROR", "Check the form.", fields=found)


@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def destination_edit(request: HttpRequest, project_id: str, destination_id: str) -> HttpResponse:
    """GET: the type's form with the stored plain values (secrets never). POST: the API's PATCH: an empty secret
    keeps the stored one."""
    membership = _managing(request, project_id)
    project = membership.project
    destination = selectors.destination_for_project(project=project, destination_id=destination_id)
    kind = destination.type
    if request.method == "GET":
        values = page_forms.form_values(kind, services.public_config(destination))
        return _form_page(request, project, kind, destination=destination, values=values, name=destination.name)
    name = request.POST.get("name", "").strip()
    config, problems = page_forms.config_from_form(kind, request.POST, patch=True)
    payload = DestinationDetailView.Input(data={"name": name, "config": config})
    try:
        _check(payload, problems)
        data = payload.validated_data
        destination = services.destination_update(destination=destination, name=data["name"], config=data["config"])
    except AppError as error:
        if error.status != 400:
            raise
        errors = page_forms.errors_by_field(error.fields, error.message, kind=kind)
        values = _typed_values(kind, request.POST)
        return _form_page(
            request, project, kind, destination=destination, values=values, name=name, errors=errors, status=400
        )
    messages.success(request, f"{destination.name} is saved.")
    return _list_redirect(project)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_POST
@login_required
def destination_test(request: HttpRequest, project_id: str, destination_id: str) -> HttpResponse:
    """Send a test image, as POST …/destinations/{id}/test does (its own deadline bounds the wait). A script asking
    for JSON gets the API's `{success, status, error, message}`; a plain form, the list with the outcome."""
    try:
        membership = _managing(request, project_id)
        destination = selectors.destination_for_project(project=membership.project, destination_id=destination_id)
        result = documents.check_result_document(services.destination_test(destination=destination))
    except AppError as error:
        if _wants_json(request):
            return JsonResponse({"success": False, "message": error.message}, status=error.status)
        if error.status != 400:
            return refusal_page(request, error)
        messages.error(request, f"The test could not run: {error.message}")
        return _list_redirect(membership.project)
    if _wants_json(request):
        return JsonResponse(result)
    if result["success"]:
        messages.success(request, f"Test of {destination.name}: {result['message']}")
    else:
        messages.error(request, f"Test of {destination.name} failed: {_failure_words(result)}")
    return _list_redirect(membership.project)


def _failure_words(result: dict[str, Any]) -> str:
    """The words of a failed test: its error (or message) and the HTTP status where there is one."""
    words = result.get("error") or result["message"]
    return f"{words} (HTTP {result['status']})" if result.get("status") else words


@require_POST
@login_required
@_refusals_as_pages
def destination_active(request: HttpRequest, project_id: str, destination_id: str) -> HttpResponse:
    """Pause (`isActive=false`) or resume (`isActive=true`), as a PATCH of `isActive` does."""
    membership = _managing(request, project_id)
    destination = selectors.destination_for_project(project=membership.project, destination_id=destination_id)
    is_active = {"true": True, "false": False}.get(request.POST.get("isActive", ""))
    if is_active is None:
        raise AppError(400, "VALIDATION_ERROR", "isActive must be true or false.")
    destination = services.destination_update(destination=destination, is_active=is_active)
    if is_active:
        messages.success(request, f"{destination.name} is resumed: new photos are delivered to it.")
    else:
        messages.success(request, f"{destination.name} is paused: new photos are not delivered to it.")
    return _list_redirect(membership.project)


@require_POST
@login_required
@_refusals_as_pages
def destination_delete(request: HttpRequest, project_id: str, destination_id: str) -> HttpResponse:
    membership = _managing(request, project_id)
    destination = selectors.destination_for_project(project=membership.project, destination_id=destination_id)
    services.destination_delete(destination=destination)
    messages.success(request, f"{destination.name} is deleted; its past deliveries keep their history.")
    return _list_redirect(membership.project)


@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def oauth_start(request: HttpRequest, kind: str) -> HttpResponse:
    """GET: a page that says what will be connected, with the button (a POST, so that no link or image on
    another site can start a flow in the user's name). POST: off to the provider's consent page."""
    fields = request.POST if request.method == "POST" else request.GET
    project = _member_project(request, fields.get("project"))
    destination = None
    if fields.get("destination"):
        destination = _member_destination(request, fields["destination"], kind=kind, project=project)
    if request.method == "POST":
        authorize_url = oauth_connect.connect_start(
            session=request.session,
            user=request.user,
            project=project,
            kind=kind,
            destination=destination,
            name=fields.get("name", ""),
        )
        return redirect(authorize_url)
    provider = oauth_connect.provider_status(kind)
    if not provider.configured:
        return _not_configured(request, kind)
    oauth_connect.ensure_can_manage(user=request.user, project=project)
    return render(
        request,
        "destinations/oauth_start.html",
        {"provider": provider, "project": project, "destination": destination, "name": fields.get("name", "")},
    )


@require_GET
@login_required
@_refusals_as_pages
def oauth_callback(request: HttpRequest, kind: str) -> HttpResponse:
    oauth_connect.oauth_backend_class(kind)
    destination = oauth_connect.connect_complete(
        session=request.session, user=request.user, kind=kind, query=request.GET.dict()
    )
    messages.success(request, f"{destination.name} is connected.")
    return redirect("destination-pages:destination-list", project_id=destination.project_id)


@require_POST
@login_required
@_refusals_as_pages
def oauth_disconnect(request: HttpRequest, kind: str, destination_id: str) -> HttpResponse:
    destination = _member_destination(request, destination_id, kind=kind)
    outcome = oauth_connect.connect_disconnect(user=request.user, destination=destination)
    provider = oauth_connect.oauth_backend_class(kind).label()
    if outcome.revoked:
        messages.success(request, f"{destination.name} is disconnected and its access revoked at {provider}.")
    elif outcome.revoke_error:
        messages.warning(
            request,
            f"{destination.name} is disconnected here, but {outcome.revoke_error}: "
            f"remove Apertur's access in your {provider} account settings.",
        )
    else:
        messages.success(
            request, f"{destination.name} is disconnected; remove Apertur's access in your {provider} account settings."
        )
    return redirect("destination-pages:destination-list", project_id=destination.project_id)
