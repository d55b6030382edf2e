"""Every state change of projects, memberships and API keys (docs/api.md "API keys")."""

import logging
import secrets
import string
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Lower
from django.utils import timezone

from apertur.errors import AppError
from apertur.ids import parse_uuid
from destinations.models import Destination
from projects.models import ApiKey, Invitation, Membership, Project, key_digest

logger = logging.getLogger(__name__)

KEY_ALPHABET = string.ascii_letters + string.digits  # base62
KEY_PREFIX_LENGTH = 14
SIGNING_SECRET_BYTES = 32  # shown as 64 hex characters, like the known-answer vector of docs/api.md "Request signing"
# docs/api.md "Authentication": lastUsedAt is written at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# The settings a key's owner may change (docs/api.md "API keys"); validated by the API before they get here.
KEY_SETTINGS = (
    "label",
    "is_active",
    "max_images",
    "allowed_mime_types",
    "max_image_dimension",
    "long_polling_enabled",
    "allowed_ips",
    "allowed_domains",
)


def project_create(*, name: str, owner) -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name)
        Membership.objects.create(user=owner, project=project, role=Membership.Role.OWNER)
    return project


def _project_destinations(*, project: Project, destination_ids: list[str], field: str) -> list[Destination]:
    """The project's destinations named by `destination_ids`, in that order; an unknown, deleted or other project's
    id is a 400 naming it under `field`. Inactive ones are accepted: a key's defaults outlive a pause."""
    canonical = {value: parse_uuid(value) for value in destination_ids}
    found = {
        destination.pk: destination
        for destination in Destination.objects.alive().filter(
            project=project, pk__in=[key for key in canonical.values() if key is not None]
        )
    }
    unknown = [value for value, key in canonical.items() if key not in found]
    if unknown:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"Unknown destination: {unknown[0]}.",
            fields={field: [f"unknown destination: {value}" for value in unknown]},
        )
    return list(dict.fromkeys(found[canonical[value]] for value in destination_ids))


def api_key_create(
    *,
    project: Project,
    label: str = "",
    env: str = ApiKey.Env.LIVE,
    default_destination_ids: list[str] | None = None,
    **key_settings,
) -> tuple[ApiKey, str]:
    """Create a key; the plain secret is returned once and only its SHA-256 is stored.

    `key_settings` are any of KEY_SETTINGS but `label`; `default_destination_ids` must name the project's
    destinations.
    """
    destinations = (
        None
        if default_destination_ids is None
        else _project_destinations(
            project=project, destination_ids=default_destination_ids, field="defaultDestinations"
        )
    )
    plain = f"aptr_{env}_" + "".join(secrets.choice(KEY_ALPHABET) for _ in range(32))
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            project=project,
            label=label,
            env=env,
            prefix=plain[:KEY_PREFIX_LENGTH],
            digest=key_digest(plain),
            **key_settings,
        )
        if destinations:
            api_key.default_destinations.set(destinations)
    return api_key, plain


def _refuse_own_revocation(*, api_key: ApiKey, acting_key: ApiKey | None) -> None:
    # A key that switched itself off (or deleted itself) would lock its caller out mid-way; another key or the
    # dashboard has to do it (docs/api.md "API keys").
    if acting_key is not None and acting_key.pk == api_key.pk:
        raise AppError(403, "FORBIDDEN", "An API key cannot revoke itself; use another key of the project.")


def api_key_update(*, api_key: ApiKey, acting_key: ApiKey | None, changes: dict) -> ApiKey:
    """Apply a PATCH: any of KEY_SETTINGS, and `default_destination_ids` (replaces the defaults)."""
    if changes.get("is_active") is False:
        _refuse_own_revocation(api_key=api_key, acting_key=acting_key)
    destinations = (
        _project_destinations(
            project=api_key.project, destination_ids=changes["default_destination_ids"], field="defaultDestinations"
        )
        if "default_destination_ids" in changes
        else None
    )
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().filter(pk=api_key.pk).first()
        if locked is None:  # deleted since it was looked up
            raise AppError(404, "NOT_FOUND", "API key not found.")
        changed = [field for field in KEY_SETTINGS if field in changes]
        for field in changed:
            setattr(locked, field, changes[field])
        if changed:
            locked.save(update_fields=changed)
        if destinations is not None:
            locked.default_destinations.set(destinations)
    return locked


def api_key_delete(*, api_key: ApiKey, acting_key: ApiKey | None) -> None:
    """Delete a key: it authenticates no more. Its sessions stay (their `env` is their own)."""
    _refuse_own_revocation(api_key=api_key, acting_key=acting_key)
    api_key.delete()


def api_key_destinations_set(
    *, api_key: ApiKey, destination_ids: list[str], long_polling_enabled: bool | None
) -> ApiKey:
    """`PUT /api/v1/keys/{keyId}/destinations`: replace the key's default destinations and, when given, its
    long-polling default."""
    destinations = _project_destinations(
        project=api_key.project, destination_ids=destination_ids, field="destination_ids"
    )
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().filter(pk=api_key.pk).first()
        if locked is None:  # deleted since it was looked up
            raise AppError(404, "NOT_FOUND", "API key not found.")
        if long_polling_enabled is not None:
            locked.long_polling_enabled = long_polling_enabled
            locked.save(update_fields=["long_polling_enabled"])
        locked.default_destinations.set(destinations)
    return locked


def api_key_signing_secret_create(*, api_key: ApiKey) -> str:
    """Give the key a new signing secret (replacing any previous one at once) and return it: the only time it is
    shown. Stored encrypted, since verifying a signature needs the secret itself."""
    secret = secrets.token_hex(SIGNING_SECRET_BYTES)
    ApiKey.objects.filter(pk=api_key.pk).update(signing_secret=secret)
    api_key.signing_secret = secret
    return secret


def api_key_signing_secret_remove(*, api_key: ApiKey) -> None:
    """The key's requests need no signature any more."""
    ApiKey.objects.filter(pk=api_key.pk).update(signing_secret=None)
    api_key.signing_secret = None


def api_key_mark_used(*, api_key: ApiKey, now: datetime) -> None:
    """Record that the key was just used, at most once a minute (docs/api.md "Authentication").

    The key as loaded tells whether a write is due, so most requests write nothing; the UPDATE's own condition
    keeps concurrent requests of several processes, each holding a stale copy, to one write per minute.
    """
    due = now - LAST_USED_RESOLUTION
    if api_key.last_used_at is not None and api_key.last_used_at > due:
        return
    ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=due), pk=api_key.pk).update(
        last_used_at=now
    )
    api_key.last_used_at = now


def bootstrap(*, email: str, password: str, project_name: str, site_admin: bool = False) -> tuple[Project, str]:
    """Create (or reuse) a user and their project by name, and a new live key for it.

    `site_admin` also lets the user into Django's admin (the development demo account).
    """
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.filter(email__iexact=email).first()
        if user is None:
            user = user_model.objects.create_user(
                username=email, email=email, password=password, is_staff=site_admin, is_superuser=site_admin
            )
            # The operator vouches for the address of an account they make: it signs in without a confirmation.
            EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        elif (
            EmailAddress.objects.filter(user=user, verified=False).exists()
            and not EmailAddress.objects.filter(user=user, verified=True).exists()
        ):
            # Someone signed up with this address and never confirmed it: their password, not the operator's,
            # opens it, so handing them a project would hand it to whoever typed the address.
            raise AppError(
                409,
                "UNCONFIRMED_ACCOUNT",
                f"An account signed up as {email} but never confirmed its address; confirm it or delete it first.",
            )
        project = Project.objects.filter(name=project_name, memberships__user=user).first()
        if project is None:
            project = project_create(name=project_name, owner=user)
        _, plain = api_key_create(project=project, label="bootstrap")
    return project, plain


# --- a project's name and members (docs/dashboard.md "Roles"; the dashboard's members and settings pages) -------------
#
# Every change locks the project's row first, so changes to one project's members happen one at a time: two owners
# removing each other at once cannot leave the project without an owner, whichever commits first.

INVITATION_LIFETIME = timedelta(days=7)
INVITATION_TOKEN_BYTES = 32


def _locked_project(project: Project) -> Project:
    return Project.objects.select_for_update().get(pk=project.pk)


def _acting_membership(*, project: Project, actor, managing: bool = True) -> Membership:
    """The actor's membership, read under the project's lock; an outsider is told nothing (404), a member who is
    not an owner or admin may not manage (403)."""
    membership = Membership.objects.filter(project=project, user=actor).first()
    if membership is None:
        raise AppError(404, "NOT_FOUND", "Project not found.")
    if managing and membership.role not in Membership.MANAGING_ROLES:
        raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can change its name and members.")
    return membership


def _locked_member(membership: Membership) -> Membership:
    found = Membership.objects.select_related("user").filter(pk=membership.pk, project=membership.project_id).first()
    if found is None:  # removed by someone else meanwhile
        raise AppError(404, "NOT_FOUND", "Member not found.")
    return found


def _refuse_losing_the_last_owner(membership: Membership) -> None:
    others = Membership.objects.filter(project=membership.project_id, role=Membership.Role.OWNER).exclude(
        pk=membership.pk
    )
    if membership.role == Membership.Role.OWNER and not others.exists():
        raise AppError(
            409,
            "LAST_OWNER",
            "A project needs an owner: make someone else an owner before the last one leaves, is removed or "
            "gets another role.",
        )


def _checked_role(role: str) -> str:
    if role not in Membership.Role.values:
        raise AppError(400, "VALIDATION_ERROR", f"Unknown role: {role[:50]}.", fields={"role": ["unknown role"]})
    return role


def project_rename(*, project: Project, name: str, actor) -> Project:
    """Rename a project (owners and admins)."""
    with transaction.atomic():
        locked = _locked_project(project)
        _acting_membership(project=locked, actor=actor)
        locked.name = name
        locked.save(update_fields=["name"])
    logger.info("project %s renamed by user %s", locked.pk, actor.pk)
    return locked


def membership_role_change(*, membership: Membership, role: str, actor) -> Membership:
    """Give a member another role. Owners and admins may; only an owner may change an owner's role or make an
    owner; the last owner keeps theirs."""
    role = _checked_role(role)
    with transaction.atomic():
        _locked_project(membership.project)
        acting = _acting_membership(project=membership.project, actor=actor)
        target = _locked_member(membership)
        if acting.role != Membership.Role.OWNER and Membership.Role.OWNER in (target.role, role):
            raise AppError(403, "FORBIDDEN", "Only an owner can change an owner's role or make someone an owner.")
        if role != Membership.Role.OWNER:
            _refuse_losing_the_last_owner(target)
        previous, target.role = target.role, role
        target.save(update_fields=["role"])
    logger.info(
        "user %s of project %s: role %s -> %s, by user %s", target.user_id, target.project_id, previous, role, actor.pk
    )
    return target


def membership_remove(*, membership: Membership, actor) -> None:
    """Remove a member, or leave (a membership of the actor's own). Owners and admins remove others; only an owner
    removes an owner; anyone may leave; the last owner may do neither."""
    leaving = membership.user_id == actor.pk
    with transaction.atomic():
        _locked_project(membership.project)
        acting = _acting_membership(project=membership.project, actor=actor, managing=not leaving)
        target = _locked_member(membership)
        if not leaving and acting.role != Membership.Role.OWNER and target.role == Membership.Role.OWNER:
            raise AppError(403, "FORBIDDEN", "Only an owner can remove an owner.")
        _refuse_losing_the_last_owner(target)
        target.delete()
    if leaving:
        logger.info("user %s left project %s", actor.pk, membership.project_id)
    else:
        logger.info("user %s removed from project %s by user %s", target.user_id, membership.project_id, actor.pk)


def _is_member(*, project: Project, email: str) -> bool:
    """Whether an account known by this address (its own or a confirmed one of its addresses) is a member."""
    return (
        Membership.objects.filter(project=project)
        .filter(
            Q(user__email__iexact=email) | Q(user__emailaddress__email__iexact=email, user__emailaddress__verified=True)
        )
        .exists()
    )


def invitation_create(*, project: Project, email: str, role: str, actor) -> Invitation:
    """Invite an address into a project with a role and mail it the link (settings.APERTUR_PUBLIC_URL +
    /invitations/<token>), good for INVITATION_LIFETIME and once. Owners and admins invite; only an owner invites
    an owner. A waiting invitation of the same address is replaced; a member's address is refused. Only the
    token's SHA-256 is stored: the mail holds the only copy, and a mail that cannot be sent makes nothing."""
    role = _checked_role(role)
    with transaction.atomic():
        locked = _locked_project(project)
        acting = _acting_membership(project=locked, actor=actor)
        if role == Membership.Role.OWNER and acting.role != Membership.Role.OWNER:
            raise AppError(403, "FORBIDDEN", "Only an owner can invite an owner.")
        if _is_member(project=locked, email=email):
            raise AppError(409, "ALREADY_MEMBER", f"{email} is already a member of the project.")
        replaced = Invitation.objects.alias(address=Lower("email")).filter(
            project=locked, address=Lower(Value(email)), accepted_at__isnull=True
        )
        if acting.role != Membership.Role.OWNER and replaced.filter(role=Membership.Role.OWNER).exists():
            raise AppError(403, "FORBIDDEN", "Only an owner can replace an owner's invitation.")
        replaced.delete()
        token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
        invitation = Invitation.objects.create(
            project=locked,
            email=email,
            role=role,
            digest=key_digest(token),
            invited_by=actor,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        _mail_invitation(invitation=invitation, token=token, inviter=actor)
    logger.info("invitation %s into project %s as %s made by user %s", invitation.pk, locked.pk, role, actor.pk)
    return invitation


def _mail_invitation(*, invitation: Invitation, token: str, inviter) -> None:
    # Sent inside the transaction: a mail server that refuses it rolls the invitation (and any replacement) back,
    # and the inviter is told, rather than an invitation nobody can open.
    link = f"{settings.APERTUR_PUBLIC_URL}/invitations/{token}"
    body = (
        f"{inviter.email} invites you to the project “{invitation.project.name}” on Apertur, as "
        f"{invitation.get_role_display().lower()}.\n\n"
        f"Open this link to accept (it works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{link}\n\n"
        f"Sign in, or create an account, with this address ({invitation.email}) first.\n"
        "If you did not expect this invitation, ignore this mail.\n"
    )
    subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Invitation to “{invitation.project.name}”"
    try:
        send_mail(" ".join(subject.split()), body, None, [invitation.email])
    except OSError as error:  # smtplib's errors are OSErrors, like a refused connection
        logger.warning("invitation mail for project %s not sent: %s", invitation.project_id, type(error).__name__)
        raise AppError(
            502, "MAIL_FAILED", "The invitation mail could not be sent; nothing was made. Try again later."
        ) from error


def invitation_revoke(*, invitation: Invitation, actor) -> None:
    """Withdraw a waiting invitation: its link opens nothing any more. Only an owner withdraws an owner's."""
    with transaction.atomic():
        _locked_project(invitation.project)
        acting = _acting_membership(project=invitation.project, actor=actor)
        if invitation.role == Membership.Role.OWNER and acting.role != Membership.Role.OWNER:
            raise AppError(403, "FORBIDDEN", "Only an owner can withdraw an owner's invitation.")
        Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).delete()
    logger.info("invitation %s into project %s withdrawn by user %s", invitation.pk, invitation.project_id, actor.pk)


def invitation_for_token(*, token: str) -> Invitation:
    """The waiting invitation a link's token opens, with its project; unknown (or withdrawn, or replaced) is 404,
    used or expired 410."""
    invitation = (
        Invitation.objects.select_related("project", "invited_by").filter(digest=key_digest(token)).first()
        if 0 < len(token) <= 100
        else None
    )
    if invitation is None:
        raise AppError(
            404,
            "NOT_FOUND",
            "This invitation link is not valid: it may have been mistyped, withdrawn, or replaced by a newer one.",
        )
    if invitation.accepted_at is not None:
        raise AppError(410, "INVITATION_USED", "This invitation has already been accepted: a link works once.")
    if invitation.expires_at <= timezone.now():
        raise AppError(
            410, "INVITATION_EXPIRED", "This invitation has expired: ask the project's owners to invite you again."
        )
    return invitation


def invitation_addressee_matches(*, invitation: Invitation, user) -> bool:
    """Whether the user has confirmed the invited address (in any letter case, as the database lower-cases it: the
    same rule as the one-waiting-invitation-per-address constraint)."""
    return (
        EmailAddress.objects.alias(address=Lower("email"))
        .filter(user=user, address=Lower(Value(invitation.email)), verified=True)
        .exists()
    )


def _refuse_if_the_inviter_may_no_longer_invite(invitation: Invitation) -> None:
    """An invitation is only as good as its sender's standing now: one made by someone since removed or demoted
    (or whose account is gone) would otherwise let them back in, or hand out a role they no longer have."""
    inviter_role = (
        Membership.objects.filter(project=invitation.project, user_id=invitation.invited_by_id)
        .values_list("role", flat=True)
        .first()
    )
    allowed = inviter_role == Membership.Role.OWNER or (
        inviter_role == Membership.Role.ADMIN and invitation.role != Membership.Role.OWNER
    )
    if invitation.invited_by_id is None or not allowed:
        raise AppError(
            410,
            "INVITATION_WITHDRAWN",
            "Whoever sent this invitation can no longer invite you: ask the project's owners for a new one.",
        )


def invitation_accept(*, token: str, user) -> Membership:
    """Accept an invitation: the user, who must have confirmed the invited address, becomes a member with its
    role, and the invitation is used up."""
    found = invitation_for_token(token=token)
    with transaction.atomic():
        _locked_project(found.project)
        invitation = invitation_for_token(token=token)  # again, under the lock: a link works once
        if not invitation_addressee_matches(invitation=invitation, user=user):
            raise AppError(
                403,
                "WRONG_ACCOUNT",
                f"This invitation is for {invitation.email}; you are signed in as {user.email}. Sign in with that "
                "address (confirmed) to accept it.",
            )
        if Membership.objects.filter(project=invitation.project, user=user).exists():
            raise AppError(409, "ALREADY_MEMBER", f"You are already a member of “{invitation.project.name}”.")
        _refuse_if_the_inviter_may_no_longer_invite(invitation)
        membership = Membership.objects.create(project=invitation.project, user=user, role=invitation.role)
        invitation.accepted_at, invitation.accepted_by = timezone.now(), user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    logger.info(
        "invitation %s accepted: user %s joined project %s as %s",
        invitation.pk,
        user.pk,
        invitation.project_id,
        invitation.role,
    )
    return membership
