"""Fixed-window rate limits per API key (or per client IP and session on the public upload endpoints).

Counters live in the cache (Redis in production) and are incremented atomically, so limits hold across
processes. The view records the window so the response can carry X-RateLimit-* headers.
"""

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from apertur.errors import AppError

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateLimitWindow:
    limit: int
    remaining: int
    reset_at: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


def hit(scope: str, identity: str) -> RateLimitWindow:
    """Count one request; raise 429 RATE_LIMITED once the window's limit is passed."""
    limit = settings.APERTUR_RATE_LIMITS[scope]
    now = time.time()
    window_start = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
    reset_at = window_start + WINDOW_SECONDS
    # The identity can hold whatever a client put in the URL (a session id): hashed, the key stays short and
    # safe for every cache backend.
    digest = hashlib.sha256(identity.encode(errors="replace")).hexdigest()
    key = f"ratelimit:{scope}:{digest}:{window_start}"
    cache.add(key, 0, timeout=WINDOW_SECONDS + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=WINDOW_SECONDS + 5)
        count = 1
    window = RateLimitWindow(limit=limit, remaining=max(limit - count, 0), reset_at=reset_at)
    if count > limit:
        raise AppError(
            429,
            "RATE_LIMITED",
            "Too many requests; slow down.",
            headers={**window.headers(), "Retry-After": str(max(int(reset_at - now), 1))},
        )
    return window
