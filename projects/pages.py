"""Project pages for signed-in users (the dashboard, docs/dashboard.md): making a project, and a
project's API keys. Views are thin: input is checked by the same serializers as the API (projects/api.py) and the
rows are written by projects/services.py."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from apertur.errors import AppError
from apertur.pages import refusal_page, show_once, take_shown_once
from destinations import selectors as destination_selectors
from projects import selectors, services
from projects.api import KeyDetailView, KeyListView
from projects.models import ALL_MIME_TYPES, ApiKey, Membership

PROJECT_NAME_MAX = 200


class ProjectForm(forms.Form):
    # CharField refuses NUL characters too (PostgreSQL cannot store them).
    name = forms.CharField(max_length=PROJECT_NAME_MAX)


@require_POST
@login_required(redirect_field_name=None)  # after signing in: the front page, whose form this is
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm({"name": " ".join(request.POST.get("name", "").split())})
    if not form.is_valid():
        messages.error(request, f"A project needs a name of 1 to {PROJECT_NAME_MAX} characters.")
        return redirect("home")
    project = services.project_create(name=form.cleaned_data["name"], owner=request.user)
    messages.success(request, f"Project “{project.name}” is ready. Add a destination to deliver its photos.")
    return redirect("destination-pages:destination-list", project_id=project.pk)


def _managing(request: HttpRequest, project_id: str) -> Membership:
    membership = selectors.membership_for(user=request.user, project_id=project_id)
    if membership.role not in Membership.MANAGING_ROLES:
        raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can change its API keys.")
    return membership


def _messages(found: Any) -> list[str]:
    """DRF's errors of one field as sentences: a list field's are by item (`{1: ["…"]}`), said as "line 2: …"."""
    if isinstance(found, dict):
        return [f"line {int(index) + 1}: {message}" for index, items in found.items() for message in _messages(items)]
    if isinstance(found, list):
        return [message for item in found for message in _messages(item)]
    return [str(found)]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _key_input(form: Any) -> dict[str, Any]:
    """The create form as the API's JSON body (docs/api.md "API keys"): the same checks, the same messages."""
    body: dict[str, Any] = {
        "label": form.get("label", ""),
        "env": form.get("env", ApiKey.Env.LIVE),
        "longPollingEnabled": form.get("longPollingEnabled") == "on",
        "allowedIps": _lines(form.get("allowedIps", "")),
        "allowedDomains": _lines(form.get("allowedDomains", "")),
        "defaultDestinations": form.getlist("defaultDestinations"),
    }
    for name in ("maxImages", "maxImageDimension"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    mime_types = form.getlist("allowedMimeTypes")
    if set(mime_types) != set(ALL_MIME_TYPES):
        body["allowedMimeTypes"] = mime_types  # none ticked is refused, as the API refuses []
    return body


def _keys_page(request: HttpRequest, membership: Membership, *, status: int = 200, **extra: Any) -> HttpResponse:
    project = membership.project
    refused_form = extra.get("form")
    return render(
        request,
        "projects/keys.html",
        {
            "project": project,
            "keys": selectors.keys_for_project(project=project),
            "destinations": destination_selectors.destinations_for_project(project=project),
            "mime_types": ALL_MIME_TYPES,
            "can_manage": membership.role in Membership.MANAGING_ROLES,
            "form": {},
            "errors": {},
            **extra,
            # What a refused form had ticked, to tick it again.
            "chosen_mime_types": refused_form.getlist("allowedMimeTypes") if refused_form else [],
            "chosen_destinations": refused_form.getlist("defaultDestinations") if refused_form else [],
        },
        status=status,
    )


@never_cache  # a page that may show a key's secret, once, must not be kept by the browser or a proxy
@require_http_methods(["GET", "POST"])
@login_required
def keys(request: HttpRequest, project_id: str) -> HttpResponse:
    """GET: the project's keys (and, once, the secret a POST just made). POST: a new key."""
    try:
        if request.method == "GET":
            membership = selectors.membership_for(user=request.user, project_id=project_id)
            return _keys_page(request, membership, **_shown_once(request, membership))
        membership = _managing(request, project_id)
        payload = KeyListView.Input(data=_key_input(request.POST))
        if not payload.is_valid():
            errors = {name: _messages(found) for name, found in payload.errors.items()}
            return _keys_page(request, membership, status=400, form=request.POST, errors=errors)
        api_key, plain = services.api_key_create(project=membership.project, **payload.service_arguments())
    except AppError as error:
        if error.status == 400:
            errors = error.fields or {"form": [error.message]}
            return _keys_page(request, membership, status=400, form=request.POST, errors=errors)
        return refusal_page(request, error)
    return _show_once(request, membership, kind="key", api_key=api_key, secret=plain)


def _show_once(
    request: HttpRequest, membership: Membership, *, kind: str, api_key: ApiKey, secret: str
) -> HttpResponse:
    url = reverse("project-pages:keys", args=[membership.project.pk])
    project_id = str(membership.project.pk)
    return show_once(request, url, kind=kind, project_id=project_id, key_id=str(api_key.pk), secret=secret)


def _shown_once(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    entry = take_shown_once(request, kinds=("key", "signing"), project_id=str(membership.project.pk))
    if entry is None:
        return {}
    api_key = ApiKey.objects.filter(pk=entry["key_id"], project=membership.project).first()
    if api_key is None:
        return {}
    if entry["kind"] == "key":
        return {"created": api_key, "plain_key": entry["secret"]}
    return {"signed": api_key, "signing_secret": entry["secret"]}


def _key_edit_input(form: Any) -> dict[str, Any]:
    """The edit form as the API's PATCH body: every setting is sent, so an emptied field clears it (no limit, the
    project's default, every image type)."""
    body = _key_input(form)
    del body["env"]  # a key's environment is part of the key itself
    for name in ("maxImages", "maxImageDimension"):
        body.setdefault(name, None)
    body.setdefault("allowedMimeTypes", None)
    body["isActive"] = form.get("isActive") == "on"
    return body


def _key_form(api_key: ApiKey) -> dict[str, Any]:
    return {
        "label": api_key.label,
        "maxImages": api_key.max_images or "",
        "maxImageDimension": api_key.max_image_dimension or "",
        "longPollingEnabled": api_key.long_polling_enabled,
        "allowedIps": "\n".join(api_key.allowed_ips),
        "allowedDomains": "\n".join(api_key.allowed_domains),
        "isActive": api_key.is_active,
    }


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def key_edit(request: HttpRequest, project_id: str, key_id: str) -> HttpResponse:
    """A key's settings (docs/api.md "API keys", PATCH): limits, types, default destinations, long polling,
    allow-lists, paused or not. Owners and admins only."""
    try:
        membership = _managing(request, project_id)
        api_key = selectors.key_for_project(project=membership.project, key_id=key_id)
        context: dict[str, Any] = {
            "project": membership.project,
            "key": api_key,
            "destinations": destination_selectors.destinations_for_project(project=membership.project),
            "mime_types": ALL_MIME_TYPES,
            "errors": {},
        }
        if request.method == "GET":
            return render(
                request,
                "projects/key_edit.html",
                {
                    **context,
                    "form": _key_form(api_key),
                    "chosen_mime_types": api_key.allowed_mime_types or list(ALL_MIME_TYPES),
                    "chosen_destinations": [str(destination.pk) for destination in api_key.default_destinations.all()],
                },
            )
        refused = {
            **context,
            "form": request.POST,
            "chosen_mime_types": request.POST.getlist("allowedMimeTypes"),
            "chosen_destinations": request.POST.getlist("defaultDestinations"),
        }
        payload = KeyDetailView.Input(data=_key_edit_input(request.POST))
        if not payload.is_valid():
            refused["errors"] = {name: _messages(found) for name, found in payload.errors.items()}
            return render(request, "projects/key_edit.html", refused, status=400)
        try:
            services.api_key_update(api_key=api_key, acting_key=None, changes=payload.service_arguments())
        except AppError as error:
            if error.status != 400:
                raise
            refused["errors"] = error.fields or {"form": [error.message]}
            return render(request, "projects/key_edit.html", refused, status=400)
    except AppError as error:
        return refusal_page(request, error)
    messages.success(request, f"The key {api_key.prefix}… is saved.")
    return redirect("project-pages:keys", project_id=membership.project.pk)


@never_cache
@require_POST
@login_required
def key_revoke(request: HttpRequest, project_id: str, key_id: str) -> HttpResponse:
    try:
        membership = _managing(request, project_id)
        api_key = selectors.key_for_project(project=membership.project, key_id=key_id)
        services.api_key_delete(api_key=api_key, acting_key=None)
    except AppError as error:
        return refusal_page(request, error)
    messages.success(request, f"The key {api_key.prefix}… is revoked: it authenticates no more.")
    return redirect("project-pages:keys", project_id=membership.project.pk)


@never_cache
@require_POST
@login_required
def key_signing_secret(request: HttpRequest, project_id: str, key_id: str) -> HttpResponse:
    """A new signing secret (replacing any previous one), shown in this answer only; or, with `remove`, none."""
    try:
        membership = _managing(request, project_id)
        api_key = selectors.key_for_project(project=membership.project, key_id=key_id)
        if request.POST.get("remove"):
            services.api_key_signing_secret_remove(api_key=api_key)
            messages.success(request, f"The key {api_key.prefix}… no longer needs signed requests.")
            return redirect("project-pages:keys", project_id=membership.project.pk)
        secret = services.api_key_signing_secret_create(api_key=api_key)
    except AppError as error:
        return refusal_page(request, error)
    return _show_once(request, membership, kind="signing", api_key=api_key, secret=secret)
