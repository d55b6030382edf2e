"""A project's settings and members pages, the invitation link's page and the project switcher
(projects/member_pages.py): who sees and changes what, what each refusal looks like, no N+1, no token in logs."""

import logging
import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from projects.models import Invitation, Membership, Project
from projects.services import invitation_create, project_create
from tests.factories import signed_in

LINK = re.compile(r"https?://\S+/invitations/(\S+)")
ROLES = ("owner", "admin", "member", "outsider")


def make_user(email: str):
    user = get_user_model().objects.create_user(username=email, email=email, password="x" * 12)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


@pytest.fixture
def team(db):
    """A project with an owner, an admin and a member, and an outsider who owns another project."""
    people = {role: make_user(f"{role}@example.test") for role in ("owner", "admin", "member", "outsider")}
    project = project_create(name="Claims", owner=people["owner"])
    for role in ("admin", "member"):
        Membership.objects.create(project=project, user=people[role], role=role)
    project_create(name="Elsewhere", owner=people["outsider"])
    return project, people


def member_id(project: Project, user) -> int:
    return Membership.objects.get(project=project, user=user).pk


def invite(project: Project, inviter, mailoutbox, email: str = "new@example.test", role: str = "member") -> str:
    invitation_create(project=project, email=email, role=role, actor=inviter)
    return LINK.search(mailoutbox[-1].body)[1]


# --- who may do what: every view by owner/admin/member/outsider/anonymous -------------------------------------


@pytest.mark.parametrize(
    ("who", "sees", "renames"), [("owner", 200, 302), ("admin", 200, 302), ("member", 200, 403), ("outsider", 404, 404)]
)
def test_who_sees_the_settings_and_who_renames(team, who, sees, renames):
    project, people = team
    client = signed_in(people[who])

    page = client.get(f"/projects/{project.pk}/settings")
    renamed = client.post(f"/projects/{project.pk}/settings", {"name": f"  Renamed   by {who} "})

    project.refresh_from_db()
    assert (page.status_code, renamed.status_code) == (sees, renames)
    assert (project.name == f"Renamed by {who}") == (renames == 302)
    if sees == 200:
        assert str(project.pk) in page.content.decode()
        assert ("Rename project" in page.content.decode()) == (renames == 302)


@pytest.mark.parametrize(
    ("who", "sees", "invites"), [("owner", 200, 302), ("admin", 200, 302), ("member", 200, 403), ("outsider", 404, 404)]
)
def test_who_sees_the_members_and_who_invites(team, mailoutbox, who, sees, invites):
    project, people = team
    client = signed_in(people[who])

    page = client.get(f"/projects/{project.pk}/members")
    invited = client.post(f"/projects/{project.pk}/members", {"email": "new@example.test", "role": "member"})

    assert (page.status_code, invited.status_code) == (sees, invites)
    assert Invitation.objects.filter(email="new@example.test").exists() == (invites == 302)
    assert len(mailoutbox) == (invites == 302)
    if sees == 200:
        text = page.content.decode()
        assert all(f"{role}@example.test" in text for role in ("owner", "admin", "member"))
        assert "outsider@example.test" not in text
        assert ("Send invitation" in text) == (invites == 302)


@pytest.mark.parametrize(
    ("who", "target", "role", "status"),
    [
        ("owner", "admin", "owner", 302),
        ("owner", "member", "admin", 302),
        ("admin", "member", "admin", 302),
        ("admin", "owner", "member", 403),
        ("admin", "member", "owner", 403),
        ("member", "admin", "member", 403),
        ("outsider", "member", "admin", 404),
        ("owner", "owner", "admin", 409),  # the last owner
    ],
)
def test_who_changes_whose_role(team, who, target, role, status):
    project, people = team

    response = signed_in(people[who]).post(
        f"/projects/{project.pk}/members/{member_id(project, people[target])}/role", {"role": role}
    )

    assert response.status_code == status
    changed = Membership.objects.get(project=project, user=people[target]).role
    assert (changed == role) == (status == 302)


@pytest.mark.parametrize(
    ("who", "target", "status"),
    [
        ("owner", "admin", 302),
        ("admin", "member", 302),
        ("admin", "owner", 403),
        ("member", "admin", 403),
        ("outsider", "member", 404),
        ("member", "member", 302),  # leaving
        ("admin", "admin", 302),  # leaving
        ("owner", "owner", 409),  # the last owner cannot leave
    ],
)
def test_who_removes_whom_and_who_may_leave(team, who, target, status):
    project, people = team

    response = signed_in(people[who]).post(
        f"/projects/{project.pk}/members/{member_id(project, people[target])}/remove"
    )

    assert response.status_code == status
    assert Membership.objects.filter(project=project, user=people[target]).exists() == (status != 302)
    if status == 302:
        assert response["Location"] == ("/" if who == target else f"/projects/{project.pk}/members")
    if status == 409:
        assert "needs an owner" in response.content.decode()


@pytest.mark.parametrize(("who", "status"), [("owner", 302), ("admin", 302), ("member", 403), ("outsider", 404)])
def test_who_withdraws_an_invitation(team, mailoutbox, who, status):
    project, people = team
    invite(project, people["owner"], mailoutbox)
    invitation = Invitation.objects.get()

    response = signed_in(people[who]).post(f"/projects/{project.pk}/invitations/{invitation.pk}/revoke")

    assert response.status_code == status
    assert Invitation.objects.filter(pk=invitation.pk).exists() == (status != 302)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/projects/{pid}/settings"),
        ("post", "/projects/{pid}/settings"),
        ("get", "/projects/{pid}/members"),
        ("post", "/projects/{pid}/members"),
        ("post", "/projects/{pid}/members/{mid}/role"),
        ("post", "/projects/{pid}/members/{mid}/remove"),
        ("post", "/projects/{pid}/invitations/{iid}/revoke"),
        ("get", "/projects/switch?project={pid}"),
        ("post", "/invitations/{token}"),
    ],
)
def test_an_anonymous_visitor_is_sent_to_sign_in_and_changes_nothing(team, mailoutbox, method, path):
    project, people = team
    token = invite(project, people["owner"], mailoutbox)
    url = path.format(
        pid=project.pk, mid=member_id(project, people["member"]), iid=Invitation.objects.get().pk, token=token
    )

    response = getattr(Client(), method)(url, {"role": "owner", "name": "x", "email": "a@example.test"})

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert Project.objects.get(pk=project.pk).name == "Claims"
    assert Membership.objects.filter(project=project).count() == 3 and Invitation.objects.count() == 1


@pytest.mark.parametrize(
    "path",
    [
        "/projects/{pid}/members/{mid}/role",
        "/projects/{pid}/members/{mid}/remove",
        "/projects/{pid}/invitations/{iid}/revoke",
    ],
)
def test_a_get_of_a_change_is_refused(team, mailoutbox, path):
    project, people = team
    invite(project, people["owner"], mailoutbox)
    url = path.format(pid=project.pk, mid=member_id(project, people["member"]), iid=Invitation.objects.get().pk)

    assert signed_in(people["owner"]).get(url).status_code == 405


def test_changes_need_the_csrf_token(team):
    project, people = team
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["owner"])

    response = client.post(f"/projects/{project.pk}/members/{member_id(project, people['member'])}/remove")

    assert response.status_code == 403
    assert Membership.objects.filter(project=project, user=people["member"]).exists()


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/projects/not-a-uuid/members",
        "/projects/{pid}/members/not-a-number/role",
        "/projects/{pid}/members/99999999999999999999999/remove",
        "/projects/{pid}/members/{other}/remove",  # another project's membership
        "/projects/{pid}/invitations/not-a-uuid/revoke",
        "/projects/{pid}/invitations/00000000-0000-0000-0000-000000000000/revoke",
    ],
)
def test_malformed_or_foreign_ids_are_not_found(team, path):
    project, people = team
    other = Membership.objects.get(user=people["outsider"]).pk

    response = signed_in(people["owner"]).post(path.format(pid=project.pk, other=other), {"role": "admin"})

    assert response.status_code == 404
    assert Membership.objects.count() == 4


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not an address", "role": "member"}, "invite-email"),
        ({"email": "a" * 300 + "@example.test", "role": "member"}, "invite-email"),
        ({"email": "a\x00b@example.test", "role": "member"}, "invite-email"),
        ({"role": "member"}, "invite-email"),
        ({"email": "new@example.test", "role": "king"}, "invite-role"),
        ({"email": "new@example.test"}, "invite-role"),
    ],
)
def test_a_bad_invitation_is_said_next_to_its_field_and_sends_nothing(team, mailoutbox, fields, field):
    project, people = team

    response = signed_in(people["owner"]).post(f"/projects/{project.pk}/members", {**fields, "extra": "ignored"})

    assert response.status_code == 400
    assert f'id="{field}-errors"' in response.content.decode()
    assert not Invitation.objects.exists() and not mailoutbox


def test_inviting_a_member_is_said_next_to_the_address(team, mailoutbox):
    project, people = team

    response = signed_in(people["admin"]).post(
        f"/projects/{project.pk}/members", {"email": "Member@Example.test", "role": "admin"}
    )

    assert response.status_code == 409
    assert "is already a member of the project" in response.content.decode()
    assert 'value="Member@Example.test"' in response.content.decode()


def test_an_admin_is_not_offered_the_owner_role_and_cannot_post_it(team, mailoutbox):
    project, people = team
    client = signed_in(people["admin"])

    page = client.get(f"/projects/{project.pk}/members").content.decode()
    response = client.post(f"/projects/{project.pk}/members", {"email": "new@example.test", "role": "owner"})

    assert 'value="owner"' not in page
    assert response.status_code == 403 and not Invitation.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "a\x00b"])
def test_a_bad_name_is_said_next_to_the_field_and_changes_nothing(team, name):
    project, people = team

    response = signed_in(people["owner"]).post(f"/projects/{project.pk}/settings", {"name": name})

    assert response.status_code == 400 and 'id="project-name-errors"' in response.content.decode()
    assert Project.objects.get(pk=project.pk).name == "Claims"


def test_a_role_change_without_a_role_is_refused(team):
    project, people = team

    response = signed_in(people["owner"]).post(
        f"/projects/{project.pk}/members/{member_id(project, people['member'])}/role"
    )

    assert response.status_code == 400
    assert Membership.objects.get(project=project, user=people["member"]).role == "member"


# --- the members page -----------------------------------------------------------------------------------------


def test_the_members_page_shows_roles_dates_and_waiting_invitations(team, mailoutbox):
    project, people = team
    invite(project, people["owner"], mailoutbox, email="waiting@example.test", role="admin")

    text = signed_in(people["member"]).get(f"/projects/{project.pk}/members").content.decode()

    assert "waiting@example.test" in text and "Withdraw" not in text and "Change role" not in text
    assert "Leave project" in text  # a member may leave


def test_the_members_page_costs_the_same_queries_for_few_or_many_members(team, mailoutbox):
    project, people = team
    client = signed_in(people["owner"])
    with CaptureQueriesContext(connection) as few:
        client.get(f"/projects/{project.pk}/members")
    for number in range(8):
        Membership.objects.create(project=project, user=make_user(f"more{number}@example.test"), role="member")
        invite(project, people["owner"], mailoutbox, email=f"waiting{number}@example.test")
    with CaptureQueriesContext(connection) as many:
        response = client.get(f"/projects/{project.pk}/members")

    assert response.content.decode().count(">Change role<") == 11
    assert len(many) == len(few)


# --- the invitation link --------------------------------------------------------------------------------------


def test_the_invitee_sees_the_project_and_role_and_accepts_once(team, mailoutbox):
    project, people = team
    token = invite(project, people["owner"], mailoutbox, email="New@Example.test", role="admin")
    invitee = signed_in(make_user("new@example.test"))

    page = invitee.get(f"/invitations/{token}")
    accepted = invitee.post(f"/invitations/{token}")
    again = invitee.post(f"/invitations/{token}")

    assert page.status_code == 200 and "Claims" in page.content.decode() and "admin" in page.content.decode()
    assert "Accept invitation" in page.content.decode()
    assert accepted.status_code == 302 and accepted["Location"] == f"/projects/{project.pk}/destinations"
    assert Membership.objects.get(project=project, user__email="new@example.test").role == "admin"
    assert again.status_code == 410 and "already been accepted" in again.content.decode()
    assert invitee.get(f"/invitations/{token}").status_code == 410


def test_another_account_is_told_whom_the_invitation_is_for(team, mailoutbox):
    project, people = team
    token = invite(project, people["owner"], mailoutbox)
    stranger = signed_in(people["outsider"])

    page = stranger.get(f"/invitations/{token}")
    accepted = stranger.post(f"/invitations/{token}")

    assert page.status_code == 403 and "This invitation is for new@example.test" in page.content.decode()
    assert "Accept invitation" not in page.content.decode()
    assert (
        accepted.status_code == 403 and not Membership.objects.filter(project=project, user=people["outsider"]).exists()
    )


def test_a_member_is_told_they_are_a_member_already(team, mailoutbox):
    project, people = team
    token = invite(project, people["owner"], mailoutbox, email="second@example.test")
    EmailAddress.objects.create(user=people["member"], email="second@example.test", verified=True)

    page = signed_in(people["member"]).get(f"/invitations/{token}")

    assert page.status_code == 200 and "already a member" in page.content.decode()


def test_an_anonymous_visitor_is_offered_sign_in_and_sign_up_that_come_back(team, mailoutbox):
    project, people = team
    token = invite(project, people["owner"], mailoutbox)

    text = Client().get(f"/invitations/{token}").content.decode()

    assert f'href="/accounts/login/?next=/invitations/{token}"' in text
    assert f'href="/accounts/signup/?next=/invitations/{token}"' in text
    assert "new@example.test" in text and "Claims" in text


@pytest.mark.parametrize(("state", "status"), [("unknown", 404), ("used", 410), ("expired", 410), ("withdrawn", 404)])
def test_a_dead_link_says_so_with_its_status(team, mailoutbox, state, status):
    from datetime import timedelta

    from django.utils import timezone

    project, people = team
    token = "nothing-like-this" if state == "unknown" else invite(project, people["owner"], mailoutbox)
    if state == "used":
        Invitation.objects.update(accepted_at=timezone.now())
    if state == "expired":
        Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    if state == "withdrawn":
        Invitation.objects.all().delete()

    page = signed_in(make_user("new@example.test")).get(f"/invitations/{token}")

    assert page.status_code == status
    assert ("Invitation no longer valid" if status == 410 else "Invitation not found") in page.content.decode()


def test_the_token_stays_out_of_the_logs(team, mailoutbox, caplog):
    project, people = team
    token = invite(project, people["owner"], mailoutbox)
    caplog.set_level(logging.INFO)

    signed_in(people["outsider"]).get(f"/invitations/{token}")  # a 403, logged by django.request

    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "/invitations/[redacted]" in logged and token not in logged


def test_the_access_log_redacts_the_token_in_the_path_and_in_a_next_query():
    from apertur.request_logging import RedactTokens

    redact = RedactTokens()._redacted
    assert redact('"GET /invitations/abc_DEF-1 HTTP/1.1" 200') == '"GET /invitations/[redacted] HTTP/1.1" 200'
    assert redact("GET /accounts/login/?next=/invitations/abc_DEF-1 HTTP/1.1") == (
        "GET /accounts/login/?next=/invitations/[redacted] HTTP/1.1"
    )
    assert redact("GET /accounts/signup/?next=%2finvitations%2Fabc_DEF-1&x=1 HTTP/1.1") == (
        "GET /accounts/signup/?next=%2finvitations%2F[redacted]&x=1 HTTP/1.1"
    )


# --- the project switcher -------------------------------------------------------------------------------------


def test_the_switcher_lists_the_users_projects_and_opens_the_same_page_of_another(team):
    project, people = team
    second = project_create(name="Another", owner=people["admin"])
    client = signed_in(people["admin"])

    page = client.get(f"/projects/{project.pk}/keys").content.decode()
    moved = client.get("/projects/switch", {"project": str(second.pk), "from": f"/projects/{project.pk}/members"})
    detail = client.get("/projects/switch", {"project": str(second.pk), "from": f"/projects/{project.pk}/sessions/x"})
    elsewhere = client.get("/projects/switch", {"project": str(second.pk), "from": "https://evil.example/"})

    assert f'<option value="{second.pk}">Another</option>' in page and "Elsewhere" not in page
    assert moved["Location"] == f"/projects/{second.pk}/members"
    assert detail["Location"] == f"/projects/{second.pk}/sessions"  # the same page, a list where it was a detail
    assert elsewhere["Location"] == f"/projects/{second.pk}/destinations"


@pytest.mark.parametrize("chosen", ["", "not-a-uuid", "outsiders"])
def test_the_switcher_opens_no_project_of_someone_else(team, chosen):
    _, people = team
    if chosen == "outsiders":
        chosen = str(Project.objects.get(name="Elsewhere").pk)

    response = signed_in(people["owner"]).get("/projects/switch", {"project": chosen, "from": "/"})

    assert response.status_code == 404


def test_the_project_nav_links_the_members_and_settings(team):
    project, people = team

    text = signed_in(people["member"]).get(f"/projects/{project.pk}/keys").content.decode()

    assert f'href="/projects/{project.pk}/members"' in text and f'href="/projects/{project.pk}/settings"' in text


def test_the_invitation_form_offers_member_first(team):
    project, people = team

    text = signed_in(people["owner"]).get(f"/projects/{project.pk}/members").content.decode()

    form = text.split('id="invite-role"')[1]
    assert form.index('value="member"') < form.index('value="admin"') < form.index('value="owner"')


def test_the_last_owner_is_not_offered_to_leave(team):
    project, people = team
    alone = signed_in(people["owner"]).get(f"/projects/{project.pk}/members").content.decode()
    Membership.objects.filter(project=project, user=people["admin"]).update(role=Membership.Role.OWNER)
    two = signed_in(people["owner"]).get(f"/projects/{project.pk}/members").content.decode()

    assert "Leave project" not in alone and "The last owner cannot leave" in alone
    assert "Leave project" in two
