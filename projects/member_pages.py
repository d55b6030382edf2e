"""A project's settings (its name) and members (roles, removal, leaving, invitations by email), the invitation
link's page, and the project switcher (docs/dashboard.md "Pages"). Views are thin: every rule (who may do what, the last
owner, single-use invitations) is in projects/services.py, which locks the project's row for each change."""

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apertur.errors import AppError
from apertur.pages import refusal_page
from projects import member_selectors, selectors, services
from projects.models import Invitation, Membership
from projects.pages import ProjectForm

PageView = Callable[..., HttpResponse]
# The roles an invitation may give, in the order the form offers them; only owners see "owner".
INVITATION_ROLES = [Membership.Role.MEMBER, Membership.Role.ADMIN, Membership.Role.OWNER]


def _refusals_as_pages(view: PageView) -> PageView:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except AppError as error:
            return refusal_page(request, error)

    return wrapper


class InvitationForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=[(role.value, role.label) for role in INVITATION_ROLES])


def _form_errors(form: forms.Form) -> dict[str, list[str]]:
    return {name: [str(message) for message in found] for name, found in form.errors.items()}


# --- settings -------------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def project_settings(request: HttpRequest, project_id: str) -> HttpResponse:
    """GET: the project's name and id. POST: a new name (owners and admins)."""
    membership = selectors.membership_for(user=request.user, project_id=project_id)
    context: dict[str, Any] = {
        "project": membership.project,
        "can_manage": membership.role in Membership.MANAGING_ROLES,
        "errors": {},
    }
    if request.method == "GET":
        return render(request, "projects/settings.html", context)
    form = ProjectForm({"name": " ".join(request.POST.get("name", "").split())})
    if not form.is_valid():
        if not context["can_manage"]:  # a member is told they may not, not that the name was bad
            raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can change its name and members.")
        errors = {"name": [f"A project needs a name of 1 to {ProjectForm.base_fields['name'].max_length} characters."]}
        context.update(errors=errors, name=request.POST.get("name", "")[: ProjectForm.base_fields["name"].max_length])
        return render(request, "projects/settings.html", context, status=400)
    project = services.project_rename(project=membership.project, name=form.cleaned_data["name"], actor=request.user)
    messages.success(request, f"The project is now called “{project.name}”.")
    return redirect("project-pages:settings", project_id=project.pk)


# --- members --------------------------------------------------------------------------------------------------


def _members_page(request: HttpRequest, membership: Membership, *, status: int = 200, **extra: Any) -> HttpResponse:
    project = membership.project
    is_owner = membership.role == Membership.Role.OWNER
    can_manage = membership.role in Membership.MANAGING_ROLES
    members = member_selectors.members_of_project(project=project)
    owners = sum(member.role == Membership.Role.OWNER for member in members)
    for member in members:
        # What the page offers on each row; the services decide again, under the project's lock.
        member.is_you = member.pk == membership.pk
        member.can_leave = member.role != Membership.Role.OWNER or owners > 1
        member.can_change = can_manage and (is_owner or member.role != Membership.Role.OWNER)
    invitations = member_selectors.waiting_invitations_of_project(project=project)
    now = timezone.now()
    for invitation in invitations:
        invitation.expired = invitation.expires_at <= now
    return render(
        request,
        "projects/members.html",
        {
            "project": project,
            "you": membership,
            "members": members,
            "invitations": invitations,
            "can_manage": can_manage,
            "is_owner": is_owner,
            # Member first: the form's default is the least power. Only owners may give "owner".
            "roles": [(role.value, role.label) for role in (INVITATION_ROLES if is_owner else INVITATION_ROLES[:2])],
            "form": {},
            "errors": {},
            **extra,
        },
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@_refusals_as_pages
def members(request: HttpRequest, project_id: str) -> HttpResponse:
    """GET: the members and the waiting invitations. POST: invite an address with a role (mailed a link)."""
    membership = selectors.membership_for(user=request.user, project_id=project_id)
    if request.method == "GET":
        return _members_page(request, membership)
    if membership.role not in Membership.MANAGING_ROLES:
        raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can invite.")
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _members_page(request, membership, status=400, form=request.POST, errors=_form_errors(form))
    email = form.cleaned_data["email"]
    try:
        invitation = services.invitation_create(
            project=membership.project, email=email, role=form.cleaned_data["role"], actor=request.user
        )
    except AppError as error:
        if error.status in (400, 409, 502):
            field = "role" if error.fields and "role" in error.fields else "email"
            return _members_page(
                request, membership, status=error.status, form=request.POST, errors={field: [error.message]}
            )
        raise
    messages.success(
        request, f"An invitation is on its way to {invitation.email} ({invitation.get_role_display().lower()})."
    )
    return redirect("project-pages:members", project_id=membership.project.pk)


@require_POST
@login_required
@_refusals_as_pages
def member_role(request: HttpRequest, project_id: str, membership_id: str) -> HttpResponse:
    membership = selectors.membership_for(user=request.user, project_id=project_id)
    target = member_selectors.member_of_project(project=membership.project, membership_id=membership_id)
    changed = services.membership_role_change(membership=target, role=request.POST.get("role", ""), actor=request.user)
    messages.success(request, f"{changed.user.email} is now {changed.get_role_display().lower()}.")
    return redirect("project-pages:members", project_id=membership.project.pk)


@require_POST
@login_required
@_refusals_as_pages
def member_remove(request: HttpRequest, project_id: str, membership_id: str) -> HttpResponse:
    """Remove a member or, for one's own membership, leave the project."""
    membership = selectors.membership_for(user=request.user, project_id=project_id)
    target = member_selectors.member_of_project(project=membership.project, membership_id=membership_id)
    services.membership_remove(membership=target, actor=request.user)
    if target.pk == membership.pk:
        messages.success(request, f"You left “{membership.project.name}”.")
        return redirect("home")
    messages.success(request, f"{target.user.email} is no longer a member.")
    return redirect("project-pages:members", project_id=membership.project.pk)


@require_POST
@login_required
@_refusals_as_pages
def invitation_revoke(request: HttpRequest, project_id: str, invitation_id: str) -> HttpResponse:
    membership = selectors.membership_for(user=request.user, project_id=project_id)
    invitation = member_selectors.waiting_invitation_of_project(project=membership.project, invitation_id=invitation_id)
    services.invitation_revoke(invitation=invitation, actor=request.user)
    messages.success(request, f"The invitation of {invitation.email} is withdrawn: its link opens nothing now.")
    return redirect("project-pages:members", project_id=membership.project.pk)


# --- the invitation link --------------------------------------------------------------------------------------


def _invitation_page(
    request: HttpRequest, token: str, invitation: Invitation | None, *, status: int = 200, **extra: Any
) -> HttpResponse:
    user = request.user
    context: dict[str, Any] = {"invitation": invitation, "token": token, "state": "open", **extra}
    if invitation is None:
        context["heading"] = "Invitation no longer valid" if status == 410 else "Invitation not found"
    elif user.is_authenticated:
        if Membership.objects.filter(project=invitation.project, user=user).exists():
            context["state"] = "member"
        elif not services.invitation_addressee_matches(invitation=invitation, user=user):
            context["state"] = "other-account"
            status = max(status, 403)
        else:
            context["state"] = "acceptable"
    return render(request, "projects/invitation.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """GET: what the invitation is (project, role, address) and, to its addressee signed in, an Accept button;
    anyone else is told whom it is for and how to sign in or up and come back. POST: accept it."""
    if request.method == "POST" and not request.user.is_authenticated:
        return redirect(f"{reverse('account_login')}?next={request.path}")
    try:
        found = services.invitation_for_token(token=token)
    except AppError as error:
        return _invitation_page(request, token, None, status=error.status, problem=error.message)
    if request.method == "GET":
        return _invitation_page(request, token, found)
    try:
        joined = services.invitation_accept(token=token, user=request.user)
    except AppError as error:
        return _invitation_page(request, token, found, status=error.status, problem=error.message)
    messages.success(request, f"Welcome to “{joined.project.name}”: you are {joined.get_role_display().lower()}.")
    return redirect("destination-pages:destination-list", project_id=joined.project.pk)


# --- the project switcher -------------------------------------------------------------------------------------

PROJECT_PAGE = re.compile(r"^/projects/[^/]+/([a-z][a-z-]*)")


@require_GET
@login_required
@_refusals_as_pages
def project_switch(request: HttpRequest) -> HttpResponse:
    """The same page (destinations, keys, members…) of the chosen project; its destinations when that page has
    no equivalent there (a page of one session, say)."""
    membership = selectors.membership_for(user=request.user, project_id=request.GET.get("project", ""))
    found = PROJECT_PAGE.match(request.GET.get("from", ""))
    if found:
        same_page = f"/projects/{membership.project.pk}/{found[1]}"
        try:
            resolve(same_page)
        except Resolver404:
            pass
        else:
            return redirect(same_page)
    return redirect("destination-pages:destination-list", project_id=membership.project.pk)
