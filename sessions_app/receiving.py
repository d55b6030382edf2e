"""`image_receive`: an upload into a session, every rule of docs/api.md "Uploading images" in its order.

The API view and the phone page's plain form post both call it; neither repeats a rule.
"""

import json
import os
import re
import unicodedata
from collections.abc import Callable
from contextlib import closing

from apertur.errors import AppError
from sessions_app import encryption, passwords, selectors, services
from sessions_app.images import inspect_image
from sessions_app.models import Image
from sessions_app.uploads import (
    MEBIBYTE,
    MULTIPART_OVERHEAD_BYTES,
    ReceivedFile,
    UploadContent,
    UploadLimits,
    file_missing,
    received_from_bytes,
    too_large,
)

SOURCE_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
DEFAULT_SOURCE = "camera"
ENCRYPTION_SCHEME = "default"
MAX_FILENAME_BYTES = 255

# Reads the request's body within the limits it is given (uploads.read_upload_body, bound to a request).
BodyReader = Callable[[UploadLimits], UploadContent]


def image_receive(
    *,
    session_id: str,
    read_body: BodyReader,
    encryption_scheme: str | None,
    password: str | None,
    password_cookie: str | None,
    ip: str,
) -> Image:
    """Accept one image into a session, or raise the error of the first rule it breaks:

    session exists (404) → not expired (410) → not closed (409) → password (401, 429) → room for one more
    image (422) → size (413) → a decodable JPEG, PNG, WebP or HEIC of an allowed type (415, 400) → pixel cap
    and decode cost (400) → dimensions (422); 503 SERVER_BUSY when no decoder comes free in time.

    The body is read (`read_body`) only once the session's rules have passed, and the size is enforced while
    it streams. `encryption_scheme` is the X-Aptr-Encrypted header, or "default" for a JSON-body envelope;
    `password` is the x-session-password header, `password_cookie` the value of the page's signed cookie.
    """
    session = services.ensure_open_for_upload(session=selectors.session_public(session_id=session_id))
    passwords.ensure_password(session=session, password=password, cookie=password_cookie, ip=ip)
    services.ensure_room_for_image(session=session)
    if encryption_scheme not in (None, ENCRYPTION_SCHEME):
        raise encryption.invalid_envelope(f"unknown scheme {encryption_scheme!r} (only `{ENCRYPTION_SCHEME}`)")
    encrypted = encryption_scheme is not None
    image_limit = session.effective_max_image_size_mb * MEBIBYTE
    body_limit = encryption.envelope_limit_bytes(image_limit) if encrypted else image_limit
    # Temporary files (the part as sent, a decrypted image) are closed, so deleted, whatever happens.
    with (
        closing(read_body(UploadLimits(image_bytes=image_limit, body_bytes=body_limit))) as content,
        closing(_image_of(content, encrypted=encrypted, limit_bytes=image_limit)) as received,
    ):
        source = _valid_source(content.source)
        facts = inspect_image(
            received.temporary_file_path(),
            allowed_mime_types=session.allowed_mime_types,
            max_dimension=session.max_image_dimension,
        )
        return services.image_accept(
            session=session,
            received=received,
            facts=facts,
            filename=sanitise_filename(received.client_name, facts.extension),
            source=source,
            is_encrypted=encrypted,
        )


def upload_precheck(*, session_id: str, declared_length: int, encrypted: bool) -> None:
    """The rules an upload can be refused by before its body is read (apertur/asgi.py runs them as the request
    arrives, so a phone does not send megabytes to learn that the session is gone): the session exists (404), is
    not expired (410) nor closed (409), and the declared length is within its limit (413). The password and the
    image count are checked with the body, in image_receive."""
    session = services.ensure_open_for_upload(session=selectors.session_public(session_id=session_id))
    image_limit = session.effective_max_image_size_mb * MEBIBYTE
    body_limit = encryption.envelope_limit_bytes(image_limit) if encrypted else image_limit
    if declared_length > body_limit + MULTIPART_OVERHEAD_BYTES:
        raise too_large(image_limit)


def _image_of(content: UploadContent, *, encrypted: bool, limit_bytes: int) -> ReceivedFile:
    """The plain image: the `file` part as sent, or what its envelope (or the JSON body) decrypts to."""
    if content.envelope is not None:
        return _opened(content.envelope, client_name=content.filename, limit_bytes=limit_bytes)
    if content.file is None:
        raise file_missing()
    if not encrypted:
        return content.file
    try:
        envelope = json.load(content.file.file)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise encryption.invalid_envelope("the file part is not a JSON envelope") from error
    return _opened(envelope, client_name=content.filename.removesuffix(".enc"), limit_bytes=limit_bytes)


def _opened(envelope: object, *, client_name: str, limit_bytes: int) -> ReceivedFile:
    plaintext = encryption.decrypt_envelope(envelope)
    if len(plaintext) > limit_bytes:
        raise too_large(limit_bytes)
    return received_from_bytes(plaintext, client_name=client_name, content_type="")


def _valid_source(source: object) -> str:
    source = source or DEFAULT_SOURCE
    if not isinstance(source, str) or not SOURCE_PATTERN.fullmatch(source):
        raise AppError(
            400,
            "VALIDATION_ERROR",
            "source must match [a-z0-9_-]{1,64}.",
            fields={"source": ["must match [a-z0-9_-]{1,64}"]},
        )
    return source


def sanitise_filename(name: str, extension: str) -> str:
    """Basename only, no control characters, at most 255 bytes of UTF-8 (the extension kept when it is short);
    a missing name becomes image.<ext>."""
    name = os.path.basename(name.replace("\\", "/"))
    name = "".join(character for character in name if unicodedata.category(character)[0] != "C").strip()
    if name in {"", ".", ".."}:
        return f"image.{extension}"
    if len(name.encode()) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not (stem and len(suffix.encode()) < 16):
        stem, dot, suffix = name, "", ""
    budget = MAX_FILENAME_BYTES - len(f"{dot}{suffix}".encode())
    # Cut on a byte count, then drop a character the cut split in two.
    return stem.encode()[:budget].decode(errors="ignore") + dot + suffix
