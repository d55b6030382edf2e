"""How django-allauth fits this site (docs/configuration.md "Accounts"): whether strangers may sign up, and the
secrets of two-factor authentication encrypted at rest."""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings
from django.http import HttpRequest

from apertur.crypto import decrypt_text, encrypt_text


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """APERTUR_ACCOUNT_ALLOW_SIGNUPS=false closes sign-up: a server for one team adds its people in the
        admin (or lets them sign up once, then closes it)."""
        return settings.ACCOUNT_ALLOW_SIGNUPS


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
