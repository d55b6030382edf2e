"""Every state change of projects, memberships and API keys."""

import secrets
import string

from django.contrib.auth import get_user_model
from django.db import transaction

from projects.models import ApiKey, Membership, Project, key_digest

KEY_ALPHABET = string.ascii_letters + string.digits  # base62
KEY_PREFIX_LENGTH = 14


def project_create(*, name: str, owner) -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name)
        Membership.objects.create(user=owner, project=project, role=Membership.Role.OWNER)
    return project


def api_key_create(*, project: Project, label: str = "", env: str = ApiKey.Env.LIVE, **limits) -> tuple[ApiKey, str]:
    """Create a key; the plain secret is returned once and only its SHA-256 is stored."""
    plain = f"aptr_{env}_" + "".join(secrets.choice(KEY_ALPHABET) for _ in range(32))
    api_key = ApiKey.objects.create(
        project=project, label=label, env=env, prefix=plain[:KEY_PREFIX_LENGTH], digest=key_digest(plain), **limits
    )
    return api_key, plain


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
        project = Project.objects.filter(name=project_name, memberships__user=user).first()
        if project is None:
            project = project_create(name=project_name, owner=user)
        _, plain = api_key_create(project=project, label="bootstrap")
    return project, plain
