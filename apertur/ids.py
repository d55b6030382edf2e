"""Prefixed, time-ordered public ids (`sess_<ULID>`, `img_<ULID>`), and reading the UUIDs clients send.

A session id is the only credential of the phone's endpoints, so each id's 80-bit random part is drawn fresh
from `secrets`. python-ulid's own generator is monotonic: within one millisecond it increments the previous
id's random part, which makes an id made next to a known one guessable. The 48-bit millisecond prefix is kept,
so ids still sort by creation time (to the millisecond).
"""

import secrets
import time
import uuid

from ulid import ULID

RANDOM_BYTES = 10  # 80 bits


def new_ulid() -> str:
    """A ULID string: 48 bits of unix milliseconds, then 80 fresh random bits."""
    milliseconds = time.time_ns() // 1_000_000
    return str(ULID.from_bytes(milliseconds.to_bytes(6, "big") + secrets.token_bytes(RANDOM_BYTES)))


def new_session_id() -> str:
    return f"sess_{new_ulid()}"


def new_image_id() -> str:
    return f"img_{new_ulid()}"


def parse_uuid(value: str) -> uuid.UUID | None:
    """A UUID a client sent (a URL segment, a body field) in any spelling `uuid.UUID` reads, or None for anything
    else: a lookup by a malformed id is simply "not found", never a database error."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
