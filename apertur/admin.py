"""The admin's login, throttled: after APERTUR_ADMIN_LOGIN_MAX_FAILURES wrong passwords for one username from one
client IP, that pair is refused for APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS (docs/configuration.md).

Admin accounts are superusers and the admin is reachable by anyone who can reach the server, so guessing must be
slow. Counters live in the cache (Redis when REDIS_URL is set, so every web process shares them). While a pair is
locked out its password is not even checked, so a guesser gets no answer and costs no hashing.
"""

import hashlib
import math
import time

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError

from apertur.api.authentication import client_ip


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": (
            "Too many failed logins for this account from your address. "
            "Logging in is blocked for %(minutes)d more minute(s); try again later."
        ),
    }

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        if not username or not self.cleaned_data.get("password"):
            return super().clean()  # a missing field is reported as usual and is not a guess
        identity = _identity(username, client_ip(self.request))
        unlock_at = cache.get(f"admin-login-locked:{identity}")
        if unlock_at is not None:
            raise self._locked_out_error(unlock_at)
        # Counted before the (slow) check, so guesses sent all at once cannot each be checked before any is counted.
        attempt = _reserve_attempt(identity)
        if attempt > settings.APERTUR_ADMIN_LOGIN_MAX_FAILURES:
            raise self._locked_out_error(_lock(identity))
        try:
            cleaned_data = super().clean()
        except ValidationError as error:
            if error.code != "invalid_login":  # an inactive account's right password is not a guess
                raise
            if attempt >= settings.APERTUR_ADMIN_LOGIN_MAX_FAILURES:
                raise self._locked_out_error(_lock(identity)) from error
            raise
        cache.delete(f"admin-login-failures:{identity}")
        return cleaned_data

    def _locked_out_error(self, unlock_at: float) -> ValidationError:
        minutes = max(math.ceil((unlock_at - time.time()) / 60), 1)
        return ValidationError(self.error_messages["locked_out"], code="locked_out", params={"minutes": minutes})


def _identity(username: str, ip: str) -> str:
    # Hashed: the username is whatever was typed, and the key must stay short and safe for every cache backend.
    return hashlib.sha256(f"{username.strip().lower()}|{ip}".encode(errors="replace")).hexdigest()


def _reserve_attempt(identity: str) -> int:
    """Count one attempt; returns how many this pair made in the current window, this one included."""
    failures_key = f"admin-login-failures:{identity}"
    cache.add(failures_key, 0, timeout=settings.APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS)
    try:
        return cache.incr(failures_key)
    except ValueError:  # evicted between add and incr
        cache.set(failures_key, 1, timeout=settings.APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS)
        return 1


def _lock(identity: str) -> float:
    """Lock the pair out (or keep the lock it already has); returns when it unlocks."""
    unlock_at = time.time() + settings.APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS
    if not cache.add(f"admin-login-locked:{identity}", unlock_at, timeout=settings.APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS):
        unlock_at = cache.get(f"admin-login-locked:{identity}") or unlock_at
    # The counter is left to run out with its window: deleting it would let guesses already past the lock check
    # start a fresh count and be checked.
    return unlock_at


admin.site.login_form = ThrottledAdminLoginForm
