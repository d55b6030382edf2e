"""The pages of a project's destinations for signed-in users: the list, and the OAuth connect flow (start,
callback, disconnect; docs/destinations.md "Connecting an OAuth destination"). Plain templates: the dashboard
styles them later. Thin: each view reads the request, calls destinations/oauth_connect.py and renders."""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apertur.errors import AppError
from apertur.ids import parse_uuid
from apertur.pages import refusal_page
from destinations import oauth_connect, selectors
from destinations.models import Destination
from projects import selectors as project_selectors
from projects.models import Project

PageView = Callable[..., HttpResponse]


def _refusals_as_pages(view: PageView) -> PageView:
    """An AppError of the flow becomes a plain page with its status and message, never a 500 or a JSON body."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except AppError as error:
            if error.code == "OAUTH_NOT_CONFIGURED":
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


@require_GET
@login_required
@_refusals_as_pages
def destination_list(request: HttpRequest, project_id: str) -> HttpResponse:
    project = _member_project(request, project_id)
    oauth_types = oauth_connect.oauth_types()
    return render(
        request,
        "destinations/list.html",
        {
            "project": project,
            "destinations": selectors.destinations_for_project(project=project),
            "oauth_types": set(oauth_types),
            "providers": [oauth_connect.provider_status(kind) for kind in oauth_types],
            "can_manage": oauth_connect.can_manage_destinations(user=request.user, project=project),
        },
    )


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
