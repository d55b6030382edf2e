"""The signed-in user's projects, on the front page, and making a new one (the start of the dashboard; SPEC's
"Projects"). Views are thin: the rows are written by projects/services.py."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from projects import services

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
