"""How django-allauth fits this site (docs/configuration.md "Accounts"): whether strangers may sign up, and the
secrets of two-factor authentication encrypted at rest."""

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from apertur.api.authentication import client_ip
from apertur.crypto import decrypt_text, encrypt_text


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """APERTUR_ACCOUNT_ALLOW_SIGNUPS=false closes sign-up: a server for one team adds its people in the
        admin (or lets them sign up once, then closes it)."""
        return settings.ACCOUNT_ALLOW_SIGNUPS

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        """Failed sign-ins count per account *and* client address (allauth counts per account and Host header):
        guesses cannot dodge the count by varying the Host header, and a stranger elsewhere cannot keep the owner
        locked out by failing on purpose. Any one address is also held to a rate of its own (ACCOUNT_RATE_LIMITS)."""
        login = str(credentials.get("email") or credentials.get("username") or "").strip().lower()
        return f"{login}|{client_ip(request)}"

    def authenticate(self, request: HttpRequest, **credentials: Any) -> AbstractBaseUser | None:
        """A staff account an operator made (`createsuperuser`, the admin) has an address nobody confirmed by
        mail: proving its password vouches for it, so the operator is not asked to confirm their own address."""
        user = super().authenticate(request, **credentials)
        operator_made = user is not None and user.is_staff and user.email
        if operator_made and not EmailAddress.objects.filter(user=user).exists():
            EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        return user


def site(request: HttpRequest) -> dict[str, bool]:
    """Template context for the site's navigation."""
    return {"signup_open": settings.ACCOUNT_ALLOW_SIGNUPS}


class MFAAdapter(DefaultMFAAdapter):
    """TOTP secrets and recovery-code seeds are encrypted at rest with the server's keys (APERTUR_SECRET_KEYS),
    like every other secret; `apertur_rotate_secrets` re-encrypts them."""

    def encrypt(self, text: str) -> str:
        return encrypt_text(text)

    def decrypt(self, encrypted_text: str) -> str:
        return decrypt_text(encrypted_text)


# The fields of an allauth Authenticator's data that MFAAdapter encrypts, by authenticator type.
ENCRYPTED_AUTHENTICATOR_FIELDS = {"totp": ("secret",), "recovery_codes": ("seed",)}
