"""Prefixed, time-ordered public ids (`sess_<ULID>`, `img_<ULID>`)."""

from ulid import ULID


def new_session_id() -> str:
    return f"sess_{ULID()}"


def new_image_id() -> str:
    return f"img_{ULID()}"
