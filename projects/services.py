"""Every state change of projects, memberships and API keys (docs/api.md "API keys")."""

import secrets
import string
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q

from apertur.errors import AppError
from apertur.ids import parse_uuid
from destinations.models import Destination
from projects.models import ApiKey, Membership, Project, key_digest

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
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
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
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
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
