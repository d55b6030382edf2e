"""The site's front page: what this server is and where to go next (the API is described in docs/api.md)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apertur.errors import AppError
from projects.models import Membership

REFUSAL_HEADINGS = {403: "Not allowed", 404: "Not found"}


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    projects = []
    if request.user.is_authenticated:
        projects = list(
            Membership.objects.filter(user=request.user).select_related("project").order_by("project__name")
        )
    return render(request, "home.html", {"api_base": "/api/v1/", "memberships": projects})


def refusal_page(request: HttpRequest, error: AppError, *, heading: str = "Not possible") -> HttpResponse:
    """An AppError of a page for signed-in users as a plain page with its status and message: never a 500 or the
    API's JSON body."""
    return render(
        request,
        "destinations/refused.html",
        {"heading": REFUSAL_HEADINGS.get(error.status, heading), "message": error.message},
        status=error.status,
    )
