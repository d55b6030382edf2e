"""Prefixed, time-ordered public ids (`sess_<ULID>`, `img_<ULID>`)."""

import uuid

from ulid import ULID


def new_session_id() -> str:
    return f"sess_{ULID()}"


def new_image_id() -> str:
    return f"img_{ULID()}"


def parse_uuid(value: str) -> uuid.UUID | None:
    """A UUID a client sent (a URL segment, a body field) in any spelling `uuid.UUID` reads, or None for anything
    else: a lookup by a malformed id is simply "not found", never a database error."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
