"""The project pages for signed-in users (projects/pages.py), included at the site's root."""

from django.urls import path

from projects import pages

app_name = "project-pages"

urlpatterns = [
    path("projects/new", pages.project_create, name="project-create"),
]
