"""The dashboard's thumbnails of staged images (docs/dashboard.md "Pages"): made once, in a decoder child with the
upload check's deadlines (sessions_app/decoding.py), and kept in staging storage beside the image until the image's
bytes are purged. A file no thumbnail can be made of is remembered too, so its cost is paid once."""

import logging
import shutil
import tempfile

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from sessions_app.decoding import DecodeFailed, DecodersBusy, DecodeTimedOut, decode_pool
from sessions_app.models import Image

logger = logging.getLogger(__name__)
THUMBNAIL_PIXELS = 160
COPY_CHUNK = 1024 * 1024


def _kept_name(staged_name: str) -> str:
    return f"{staged_name}.thumb.jpg"


def _refused_name(staged_name: str) -> str:
    return f"{staged_name}.thumb-none"


def thumbnail_for(image: Image) -> bytes | None:
    """The image's thumbnail, made on first use; None when its bytes are gone or no thumbnail can be made of them
    (or every decoder stayed busy: then the next request tries again)."""
    if image.staged_deleted_at is not None:
        return None
    kept, refused = _kept_name(image.staged_name), _refused_name(image.staged_name)
    if default_storage.exists(kept):
        with default_storage.open(kept, "rb") as stored:
            return stored.read()
    if default_storage.exists(refused):
        return None
    try:
        thumbnail = _made(image.staged_name)
    except DecodersBusy:
        return None
    except (DecodeFailed, DecodeTimedOut, OSError) as error:
        logger.warning("no thumbnail of image %s: %s", image.pk, type(error).__name__)
        thumbnail = None
    _keep(refused if thumbnail is None else kept, thumbnail or b"")
    return thumbnail


def _made(staged_name: str) -> bytes | None:
    # The child reads a path: staging may be a remote store, so a local copy goes first.
    with default_storage.open(staged_name, "rb") as staged, tempfile.NamedTemporaryFile(suffix=".img") as local:
        shutil.copyfileobj(staged, local, COPY_CHUNK)
        local.flush()
        return decode_pool().thumbnail(
            local.name,
            size=THUMBNAIL_PIXELS,
            timeout=settings.APERTUR_DECODE_TIMEOUT_SECONDS,
            wait=settings.APERTUR_DECODE_QUEUE_TIMEOUT_SECONDS,
        )


def _keep(name: str, content: bytes) -> None:
    saved = default_storage.save(name, ContentFile(content))
    if saved != name:  # another request kept the same one meanwhile: storage chose another name for this copy
        default_storage.delete(saved)


def thumbnails_delete(staged_name: str) -> None:
    """With the image's staged bytes: its thumbnail (or the note that none can be made) goes too."""
    default_storage.delete(_kept_name(staged_name))
    default_storage.delete(_refused_name(staged_name))
