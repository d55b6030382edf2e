"""Secrets at rest: MultiFernet encryption keyed by APERTUR_SECRET_KEYS.

The first key encrypts; every key decrypts. Rotation = prepend a new key, run
`manage.py apertur_rotate_secrets`, then drop the old key.
"""

import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.APERTUR_SECRET_KEYS])


def encrypt_text(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise RuntimeError("A stored secret cannot be decrypted with APERTUR_SECRET_KEYS") from error


def decrypt_text_if_fresh(token: str, *, max_age_seconds: int) -> str | None:
    """The text of a token made at most `max_age_seconds` ago with one of the configured keys; None otherwise
    (too old, forged, or from keys no longer configured)."""
    try:
        return _fernet().decrypt(token.encode(), ttl=max_age_seconds).decode()
    except (InvalidToken, ValueError):
        return None


class EncryptedJSONField(models.TextField):
    """A JSON value stored as one Fernet token; the plain value only exists in memory."""

    def from_db_value(self, value: str | None, expression, connection) -> Any:
        if value is None or value == "":
            return None
        return json.loads(decrypt_text(value))

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return encrypt_text(json.dumps(value, separators=(",", ":")))
