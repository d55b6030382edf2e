"""Reads of API keys: scoped to the caller's project, models only, never writing."""

from django.db.models import Prefetch, QuerySet

from apertur.errors import AppError
from apertur.ids import parse_uuid
from destinations.models import Destination
from projects.models import ApiKey, Membership, Project


def _keys_with_destinations() -> QuerySet[ApiKey]:
    """Keys with their (not deleted) default destinations loaded in one more query, whatever the number of keys."""
    return ApiKey.objects.prefetch_related(
        Prefetch("default_destinations", queryset=Destination.objects.alive().order_by("created_at"))
    )


def keys_for_project(*, project: Project) -> list[ApiKey]:
    """The project's keys, oldest first."""
    return list(_keys_with_destinations().filter(project=project).order_by("created_at", "pk"))


def key_for_project(*, project: Project, key_id: str) -> ApiKey:
    """A key of the project with its default destinations; another project's or a malformed id is 404."""
    key = parse_uuid(key_id)
    api_key = None if key is None else _keys_with_destinations().filter(project=project, pk=key).first()
    if api_key is None:
        raise AppError(404, "NOT_FOUND", "API key not found.")
    return api_key


def membership_for(*, user, project_id: str) -> Membership:
    """The signed-in user's membership of a project, with the project; another project or a malformed id is 404
    (never telling whether it exists)."""
    key = parse_uuid(project_id or "")
    membership = (
        None if key is None else Membership.objects.select_related("project").filter(user=user, project_id=key).first()
    )
    if membership is None:
        raise AppError(404, "NOT_FOUND", "Project not found.")
    return membership
