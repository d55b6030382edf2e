"""The site's front page: what this server is and where to go next (the API is described in docs/api.md)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"api_base": "/api/v1/"})
