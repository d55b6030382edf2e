"""The site's front page: what this server is and where to go next (the API is described in docs/api.md)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from projects.models import Membership


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    projects = []
    if request.user.is_authenticated:
        projects = list(
            Membership.objects.filter(user=request.user).select_related("project").order_by("project__name")
        )
    return render(request, "home.html", {"api_base": "/api/v1/", "memberships": projects})
