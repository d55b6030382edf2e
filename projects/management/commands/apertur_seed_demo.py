"""The demo account `make run` creates for trying Apertur on one's own machine (README.md, docs/deployment.md).

It is a superuser, so it exists only where someone asked for it: `make run` calls this command, nothing else does
(not `migrate`, not `apertur_run`). Its password is random, made on first run and kept with the demo API key in
var/demo-credentials.json (mode 0600) so every `make run` can print them again; a password changed by its owner
is never put back. On a bind address other than loopback the account would be reachable from the network, so
there it is switched off (an earlier loopback run may have made it) unless --allow-non-loopback (`DEMO=1 make
run`) says so; the next loopback run switches it on again.
"""

import ipaddress
import json
import os
import secrets
from pathlib import Path

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from projects.models import ApiKey, key_digest
from projects.services import bootstrap

DEMO_EMAIL = "demo@apertur.local"
DEMO_PROJECT = "Demo project"
# What older versions gave every demo account; an install still using it gets a random password.
KNOWN_PASSWORDS = {"demo-password"}


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine (a name other than localhost may
    resolve to anything, so it counts as reachable)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Command(BaseCommand):
    help = (
        "Create the demo superuser, project and API key once, with a random password, and print them "
        "(development only; `make run` calls it)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.APERTUR_HOST, help="the address the server will bind")
        parser.add_argument(
            "--allow-non-loopback",
            action="store_true",
            help="create the demo account although the server will be reachable from other machines",
        )

    def handle(self, *args, host: str, allow_non_loopback: bool, **options) -> None:
        if not is_loopback(host) and not allow_non_loopback:
            switched_off = (
                get_user_model().objects.filter(email__iexact=DEMO_EMAIL, is_active=True).update(is_active=False)
            )
            self.stdout.write(
                f"\nNo demo account: the server will listen on {host}, which other machines can reach"
                + (" (the demo account of an earlier run is switched off)" if switched_off else "")
                + ".\nRun `DEMO=1 make run` (manage.py apertur_seed_demo --allow-non-loopback) to use it anyway,\n"
                "or create your own account with `manage.py createsuperuser`.\n"
            )
            return
        credentials_file = settings.VAR_DIR / "demo-credentials.json"
        credentials = demo_account_ensure(credentials_file)
        self.stdout.write(
            "\nDemo account (development only)\n"
            f"  Sign in:     {settings.APERTUR_PUBLIC_URL}/accounts/login/ (admin: /admin/)\n"
            f"  Login:       {credentials['email']} / {credentials['password'] or '(the password you set)'}\n"
            f"  Project id:  {credentials['project_id']}\n"
            f"  API key:     {credentials['api_key']}\n"
            f"  (kept in {credentials_file})\n"
        )


def demo_account_ensure(credentials_file: Path) -> dict[str, str]:
    """The demo account's credentials, creating or repairing whatever of it is missing.

    Keys are stored hashed, so the key is kept in the file; the file is the one place its password is written.
    """
    credentials = _read(credentials_file)
    kept = credentials.get("password", "")
    password = kept if kept and kept not in KNOWN_PASSWORDS else secrets.token_urlsafe(16)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().filter(email__iexact=DEMO_EMAIL).first()
        if user is not None:
            if password == kept and not user.check_password(kept):
                password = ""  # its owner changed it since: theirs stays, and is not ours to print
            elif not user.check_password(password):
                # The file was lost, or the account still has an older version's well-known password.
                user.set_password(password)
            user.is_active = True
            user.save(update_fields=["password", "is_active"])
            # A demo account from before the accounts' sign-in has no address record: it is ours, made here.
            if not EmailAddress.objects.filter(user=user).exists():
                EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        key_is_valid = ApiKey.objects.filter(
            digest=key_digest(credentials.get("api_key", "")),
            project_id=credentials.get("project_id"),
            is_active=True,
        ).exists()
        if not key_is_valid:
            project, api_key = bootstrap(
                email=DEMO_EMAIL,
                password=password or secrets.token_urlsafe(16),
                project_name=DEMO_PROJECT,
                site_admin=True,
            )
            credentials.update(project_id=str(project.pk), api_key=api_key)
    credentials.update(email=DEMO_EMAIL, password=password)
    _write_private(credentials_file, credentials)
    return credentials


def _read(credentials_file: Path) -> dict[str, str]:
    try:
        document = json.loads(credentials_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _write_private(path: Path, document: dict[str, str]) -> None:
    # Written under a temporary name created 0600, then renamed over the old file: never readable by others,
    # never half-written.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, settings.PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)
