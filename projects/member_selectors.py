"""Reads of a project's members and invitations for the dashboard: models only, never writing."""

from django.db.models import QuerySet

from apertur.errors import AppError
from apertur.ids import parse_uuid
from projects.models import Invitation, Membership, Project


def members_of_project(*, project: Project) -> list[Membership]:
    """The project's memberships with their users, oldest first: one query whatever their number."""
    return list(Membership.objects.select_related("user").filter(project=project).order_by("created_at", "pk"))


def _waiting_invitations(project: Project) -> QuerySet[Invitation]:
    return Invitation.objects.filter(project=project, accepted_at__isnull=True)


def waiting_invitations_of_project(*, project: Project) -> list[Invitation]:
    """The invitations not yet accepted (expired ones too, until replaced or withdrawn), oldest first."""
    return list(_waiting_invitations(project).select_related("invited_by").order_by("created_at", "pk"))


def member_of_project(*, project: Project, membership_id: str) -> Membership:
    """A membership of the project; another project's or a malformed id is 404."""
    membership = (
        Membership.objects.select_related("user", "project").filter(project=project, pk=int(membership_id)).first()
        if membership_id.isascii() and membership_id.isdigit() and len(membership_id) <= 18
        else None
    )
    if membership is None:
        raise AppError(404, "NOT_FOUND", "Member not found.")
    return membership


def waiting_invitation_of_project(*, project: Project, invitation_id: str) -> Invitation:
    """A waiting invitation of the project; an accepted one, another project's or a malformed id is 404."""
    key = parse_uuid(invitation_id)
    invitation = None if key is None else _waiting_invitations(project).select_related("project").filter(pk=key).first()
    if invitation is None:
        raise AppError(404, "NOT_FOUND", "Invitation not found.")
    return invitation


def projects_of_user(*, user) -> list[Project]:
    """The user's projects by name (the project switcher)."""
    return list(Project.objects.filter(memberships__user=user).order_by("name", "pk"))
