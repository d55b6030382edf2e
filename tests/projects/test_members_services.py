"""A project's name and members through projects/services.py: who may rename, change roles, remove and leave; a
project never loses its last owner, even to two changes at once; invitations are mailed, stored as a digest, used
once, expire, replace each other and match the invited address in any letter case."""

import contextlib
import re
import threading
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from apertur.errors import AppError
from projects import services
from projects.models import Invitation, Membership, Project, key_digest
from projects.services import (
    invitation_accept,
    invitation_create,
    invitation_for_token,
    invitation_revoke,
    membership_remove,
    membership_role_change,
    project_create,
    project_rename,
)

LINK = re.compile(r"https?://\S+/invitations/(\S+)")


def make_user(email: str, *, verified: bool = True):
    user = get_user_model().objects.create_user(username=email, email=email, password="x" * 12)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


@pytest.fixture
def team(db):
    """A project with one owner, one admin and one member."""
    people = {role: make_user(f"{role}@example.test") for role in ("owner", "admin", "member")}
    project = project_create(name="Claims", owner=people["owner"])
    for role in ("admin", "member"):
        Membership.objects.create(project=project, user=people[role], role=role)
    people["outsider"] = make_user("outsider@example.test")
    return project, people


def membership(project: Project, user) -> Membership:
    return Membership.objects.select_related("project", "user").get(project=project, user=user)


def refused(call, status: int, code: str | None = None) -> AppError:
    with pytest.raises(AppError) as raised:
        call()
    assert raised.value.status == status
    if code:
        assert raised.value.code == code
    return raised.value


def mailed_token(mailoutbox) -> str:
    return LINK.search(mailoutbox[-1].body)[1]


# --- renaming -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), [("owner", None), ("admin", None), ("member", 403), ("outsider", 404)])
def test_owners_and_admins_rename_a_project(team, who, status):
    project, people = team

    if status is None:
        project_rename(project=project, name=f"Renamed by {who}", actor=people[who])
    else:
        refused(lambda: project_rename(project=project, name="nope", actor=people[who]), status)

    project.refresh_from_db()
    assert (project.name == f"Renamed by {who}") == (status is None)


# --- roles ----------------------------------------------------------------------------------------------------


def test_an_owner_makes_an_admin_an_owner_and_a_member_an_admin(team):
    project, people = team

    membership_role_change(membership=membership(project, people["admin"]), role="owner", actor=people["owner"])
    membership_role_change(membership=membership(project, people["member"]), role="admin", actor=people["owner"])

    assert membership(project, people["admin"]).role == "owner"
    assert membership(project, people["member"]).role == "admin"


def test_an_admin_changes_a_members_role_but_never_an_owners_nor_makes_an_owner(team):
    project, people = team

    membership_role_change(membership=membership(project, people["member"]), role="admin", actor=people["admin"])
    refused(
        lambda: membership_role_change(
            membership=membership(project, people["owner"]), role="member", actor=people["admin"]
        ),
        403,
    )
    refused(
        lambda: membership_role_change(
            membership=membership(project, people["member"]), role="owner", actor=people["admin"]
        ),
        403,
    )

    assert membership(project, people["owner"]).role == "owner"
    assert membership(project, people["member"]).role == "admin"


def test_a_member_changes_no_role_and_an_unknown_role_is_refused(team):
    project, people = team

    refused(
        lambda: membership_role_change(
            membership=membership(project, people["admin"]), role="member", actor=people["member"]
        ),
        403,
    )
    refused(
        lambda: membership_role_change(
            membership=membership(project, people["member"]), role="king", actor=people["owner"]
        ),
        400,
        "VALIDATION_ERROR",
    )

    assert membership(project, people["admin"]).role == "admin"


def test_the_last_owner_cannot_step_down_but_one_of_two_can(team):
    project, people = team
    owner = membership(project, people["owner"])

    refused(lambda: membership_role_change(membership=owner, role="admin", actor=people["owner"]), 409, "LAST_OWNER")
    membership_role_change(membership=membership(project, people["admin"]), role="owner", actor=people["owner"])
    membership_role_change(membership=owner, role="admin", actor=people["owner"])

    assert list(Membership.objects.filter(project=project, role="owner").values_list("user__email", flat=True)) == [
        "admin@example.test"
    ]


# --- removing and leaving -------------------------------------------------------------------------------------


def test_an_admin_removes_a_member_but_not_an_owner(team):
    project, people = team

    membership_remove(membership=membership(project, people["member"]), actor=people["admin"])
    refused(lambda: membership_remove(membership=membership(project, people["owner"]), actor=people["admin"]), 403)

    assert set(Membership.objects.filter(project=project).values_list("role", flat=True)) == {"owner", "admin"}


def test_a_member_removes_nobody_else_and_an_outsider_is_told_nothing(team):
    project, people = team

    refused(lambda: membership_remove(membership=membership(project, people["admin"]), actor=people["member"]), 403)
    refused(lambda: membership_remove(membership=membership(project, people["admin"]), actor=people["outsider"]), 404)

    assert Membership.objects.filter(project=project).count() == 3


@pytest.mark.parametrize("who", ["admin", "member"])
def test_anyone_may_leave(team, who):
    project, people = team

    membership_remove(membership=membership(project, people[who]), actor=people[who])

    assert not Membership.objects.filter(project=project, user=people[who]).exists()


def test_the_last_owner_can_neither_leave_nor_be_removed_but_one_of_two_owners_can(team):
    project, people = team
    owner = membership(project, people["owner"])

    refused(lambda: membership_remove(membership=owner, actor=people["owner"]), 409, "LAST_OWNER")
    second = make_user("second-owner@example.test")
    Membership.objects.create(project=project, user=second, role="owner")
    membership_remove(membership=owner, actor=second)

    assert list(Membership.objects.filter(project=project, role="owner").values_list("user", flat=True)) == [second.pk]


def test_a_member_removed_meanwhile_is_not_found(team):
    project, people = team
    stale = membership(project, people["member"])
    Membership.objects.filter(pk=stale.pk).delete()

    refused(lambda: membership_role_change(membership=stale, role="admin", actor=people["owner"]), 404)
    refused(lambda: membership_remove(membership=stale, actor=people["owner"]), 404)


@pytest.mark.django_db(transaction=True)
def test_two_owners_leaving_at_once_leave_one_owner_behind(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time: the race needs PostgreSQL's row locks")
    first, second = make_user("first@example.test"), make_user("second@example.test")
    project = project_create(name="Raced", owner=first)
    Membership.objects.create(project=project, user=second, role="owner")
    memberships = {user: membership(project, user) for user in (first, second)}
    start, checked = threading.Barrier(2), threading.Barrier(2)
    check = services._refuse_losing_the_last_owner

    def check_then_wait_for_the_other(target) -> None:
        # Both would pass the owner count before either deletes, were it not for the project's lock: with it, the
        # other waits on the lock, this wait gives up after a second, and the other counts after the commit.
        check(target)
        with contextlib.suppress(threading.BrokenBarrierError):
            checked.wait(timeout=1)

    monkeypatch.setattr(services, "_refuse_losing_the_last_owner", check_then_wait_for_the_other)
    outcomes: dict[str, object] = {}

    def leave(user) -> None:
        try:
            start.wait(timeout=10)
            membership_remove(membership=memberships[user], actor=user)
            outcomes[user.email] = "left"
        except AppError as error:
            outcomes[user.email] = error.code
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["LAST_OWNER", "left"]
    assert Membership.objects.filter(project=project, role="owner").count() == 1


# --- invitations ----------------------------------------------------------------------------------------------


def test_an_invitation_is_mailed_with_a_link_whose_token_is_stored_as_a_digest_only(team, mailoutbox, settings):
    project, people = team
    settings.APERTUR_PUBLIC_URL = "https://photos.example.test"

    invitation = invitation_create(project=project, email="new@example.test", role="admin", actor=people["owner"])

    token = mailed_token(mailoutbox)
    assert mailoutbox[-1].to == ["new@example.test"]
    assert f"https://photos.example.test/invitations/{token}" in mailoutbox[-1].body
    assert "Claims" in mailoutbox[-1].subject and "admin" in mailoutbox[-1].body
    assert invitation.digest == key_digest(token) and token not in str(Invitation.objects.values().get())
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)


def test_the_invitee_accepts_once_and_becomes_a_member_with_the_role(team, mailoutbox):
    project, people = team
    invitation_create(project=project, email="new@example.test", role="admin", actor=people["owner"])
    token = mailed_token(mailoutbox)
    invitee = make_user("new@example.test")

    joined = invitation_accept(token=token, user=invitee)

    assert (joined.project, joined.user, joined.role) == (project, invitee, "admin")
    refused(lambda: invitation_accept(token=token, user=invitee), 410, "INVITATION_USED")
    used = Invitation.objects.get()
    assert used.accepted_by == invitee and used.accepted_at is not None


def test_the_invited_address_matches_a_confirmed_address_in_any_letter_case(team, mailoutbox):
    project, people = team
    invitation_create(project=project, email="New.Person@Example.test", role="member", actor=people["owner"])
    invitee = make_user("new.person@example.TEST")

    invitation_accept(token=mailed_token(mailoutbox), user=invitee)

    assert Membership.objects.filter(project=project, user=invitee, role="member").exists()


def test_another_account_or_an_unconfirmed_address_cannot_accept(team, mailoutbox):
    project, people = team
    invitation_create(project=project, email="new@example.test", role="admin", actor=people["owner"])
    token = mailed_token(mailoutbox)
    unconfirmed = make_user("new@example.test", verified=False)

    wrong = refused(lambda: invitation_accept(token=token, user=people["outsider"]), 403, "WRONG_ACCOUNT")
    refused(lambda: invitation_accept(token=token, user=unconfirmed), 403, "WRONG_ACCOUNT")

    assert "new@example.test" in wrong.message
    assert Invitation.objects.get().accepted_at is None
    assert not Membership.objects.filter(project=project, user__in=[unconfirmed, people["outsider"]]).exists()


def test_an_expired_invitation_cannot_be_accepted(team, mailoutbox):
    project, people = team
    invitation_create(project=project, email="new@example.test", role="member", actor=people["owner"])
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    refused(
        lambda: invitation_accept(token=mailed_token(mailoutbox), user=make_user("new@example.test")),
        410,
        "INVITATION_EXPIRED",
    )


def test_a_new_invitation_of_an_address_replaces_the_waiting_one(team, mailoutbox):
    project, people = team
    invitation_create(project=project, email="new@example.test", role="member", actor=people["owner"])
    first = mailed_token(mailoutbox)

    invitation_create(project=project, email="NEW@example.test", role="admin", actor=people["admin"])
    second = mailed_token(mailoutbox)

    refused(lambda: invitation_for_token(token=first), 404, "NOT_FOUND")
    assert invitation_for_token(token=second).role == "admin"
    assert Invitation.objects.filter(project=project).count() == 1


@pytest.mark.parametrize("token", ["", "x", "a" * 5000, "\x00"])
def test_an_unknown_or_malformed_token_is_not_found(db, token):
    refused(lambda: invitation_for_token(token=token), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("who", "role", "status"),
    [
        ("owner", "owner", None),
        ("owner", "admin", None),
        ("admin", "admin", None),
        ("admin", "member", None),
        ("admin", "owner", 403),
        ("member", "member", 403),
        ("outsider", "member", 404),
        ("owner", "king", 400),
    ],
)
def test_who_invites_whom(team, mailoutbox, who, role, status):
    project, people = team

    if status is None:
        invitation_create(project=project, email="new@example.test", role=role, actor=people[who])
    else:
        refused(
            lambda: invitation_create(project=project, email="new@example.test", role=role, actor=people[who]), status
        )

    assert Invitation.objects.filter(project=project, role=role).exists() == (status is None)
    assert len(mailoutbox) == (status is None)


def test_a_members_address_is_not_invited_and_a_member_cannot_accept_twice(team, mailoutbox):
    project, people = team

    refused(
        lambda: invitation_create(project=project, email="MEMBER@example.test", role="admin", actor=people["owner"]),
        409,
        "ALREADY_MEMBER",
    )
    # An address confirmed later by someone who is a member already.
    invitation_create(project=project, email="second@example.test", role="admin", actor=people["owner"])
    EmailAddress.objects.create(user=people["member"], email="second@example.test", verified=True)
    refused(lambda: invitation_accept(token=mailed_token(mailoutbox), user=people["member"]), 409, "ALREADY_MEMBER")

    assert membership(project, people["member"]).role == "member"


def test_a_mail_that_cannot_be_sent_makes_no_invitation_and_keeps_the_waiting_one(team, mailoutbox, monkeypatch):
    project, people = team
    invitation_create(project=project, email="new@example.test", role="member", actor=people["owner"])
    waiting = mailed_token(mailoutbox)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("projects.services.send_mail", refuse)
    refused(
        lambda: invitation_create(project=project, email="new@example.test", role="admin", actor=people["owner"]),
        502,
        "MAIL_FAILED",
    )

    assert invitation_for_token(token=waiting).role == "member"


def test_a_withdrawn_invitation_opens_nothing_and_only_an_owner_withdraws_an_owners(team, mailoutbox):
    project, people = team
    invitation_create(project=project, email="boss@example.test", role="owner", actor=people["owner"])
    token = mailed_token(mailoutbox)
    invitation = Invitation.objects.get()

    refused(lambda: invitation_revoke(invitation=invitation, actor=people["admin"]), 403)
    refused(lambda: invitation_revoke(invitation=invitation, actor=people["member"]), 403)
    invitation_revoke(invitation=invitation, actor=people["owner"])

    refused(lambda: invitation_for_token(token=token), 404)


def test_changes_are_logged_without_the_token(team, mailoutbox, caplog):
    project, people = team
    caplog.set_level("INFO", logger="projects.services")

    invitation_create(project=project, email="new@example.test", role="member", actor=people["owner"])
    token = mailed_token(mailoutbox)
    invitation_accept(token=token, user=make_user("new@example.test"))
    membership_role_change(membership=membership(project, people["member"]), role="admin", actor=people["owner"])
    membership_remove(membership=membership(project, people["admin"]), actor=people["admin"])
    project_rename(project=project, name="Renamed", actor=people["owner"])

    lines = [record.getMessage() for record in caplog.records if record.name == "projects.services"]
    assert len(lines) == 5
    assert any("accepted" in line for line in lines) and any("left" in line for line in lines)
    assert not any(token in line or "new@example.test" in line for line in lines)
