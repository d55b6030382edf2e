"""Reads of destinations: scoped to the caller's project, models only, never writing."""

from apertur.errors import AppError
from apertur.ids import parse_uuid
from destinations.models import Destination
from projects.models import Project


def destinations_for_project(*, project: Project) -> list[Destination]:
    """The project's destinations (deleted ones left out), oldest first."""
    return list(Destination.objects.alive().filter(project=project).order_by("created_at"))


def destination_for_project(*, project: Project, destination_id: str) -> Destination:
    """A destination of the project; a deleted one, another project's or a malformed id is 404."""
    key = parse_uuid(destination_id)
    destination = None if key is None else Destination.objects.alive().filter(project=project, pk=key).first()
    if destination is None:
        raise AppError(404, "NOT_FOUND", "Destination not found.")
    return destination
