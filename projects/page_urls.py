"""The project pages for signed-in users (projects/pages.py, projects/member_pages.py), included at the site's
root. The invitation link (`/invitations/<token>`) is mailed: keep it stable."""

from django.urls import path

from projects import member_pages, pages

app_name = "project-pages"

urlpatterns = [
    path("projects/new", pages.project_create, name="project-create"),
    path("projects/switch", member_pages.project_switch, name="project-switch"),
    path("projects/<str:project_id>/keys", pages.keys, name="keys"),
    path("projects/<str:project_id>/keys/<str:key_id>/edit", pages.key_edit, name="key-edit"),
    path("projects/<str:project_id>/keys/<str:key_id>/revoke", pages.key_revoke, name="key-revoke"),
    path(
        "projects/<str:project_id>/keys/<str:key_id>/signing-secret",
        pages.key_signing_secret,
        name="key-signing-secret",
    ),
    path("projects/<str:project_id>/settings", member_pages.project_settings, name="settings"),
    path("projects/<str:project_id>/members", member_pages.members, name="members"),
    path("projects/<str:project_id>/members/<str:membership_id>/role", member_pages.member_role, name="member-role"),
    path(
        "projects/<str:project_id>/members/<str:membership_id>/remove",
        member_pages.member_remove,
        name="member-remove",
    ),
    path(
        "projects/<str:project_id>/invitations/<str:invitation_id>/revoke",
        member_pages.invitation_revoke,
        name="invitation-revoke",
    ),
    path("invitations/<str:token>", member_pages.invitation, name="invitation"),
]
