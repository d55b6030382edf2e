import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Personas and session passwords are hashed many times per test; PBKDF2's cost only slows the suite.

    Still Django's hasher framework, so make_password/check_password behave as in production.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
