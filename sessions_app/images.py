"""What an uploaded file really is (docs/api.md "Uploading images"): sniffed by decoding, never by the declared
type, with the work a hostile file can cause bounded before and during the decode."""

import math
import mmap
import re
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings

from apertur.errors import AppError
from sessions_app.decoding import FORMATS, DecodeFailed, DecodersBusy, DecodeTimedOut, Inspection, decode_pool

# Cameras and encoders write 1 scan (baseline) to about 10 (progressive; mozjpeg's optimised scripts a few
# more). Each scan makes the decoder pass over the whole image again, so a small file repeating one scan hundreds
# of times costs minutes of CPU to decode.
MAX_JPEG_SCANS = 100
# The marker walk below runs in Python once per marker segment; a real JPEG has a few dozen (extended XMP
# and ICC profiles split in 64 KB segments: a few thousand at most for 100 MB). Beyond this the file is refused
# rather than walked.
MAX_JPEG_SEGMENTS = 10_000
# 0xFF followed by a byte that starts a marker segment: not 0x00 (a stuffed 0xFF in entropy-coded data), not
# 0xFF (fill before a marker), not RST0-7 or TEM (markers without a segment, inside or between scans).
_SEGMENT_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")
_JPEG_SIGNATURE = b"\xff\xd8\xff"  # what Pillow's JPEG opener checks
_START_OF_SCAN = 0xDA
_END_OF_IMAGE = 0xD9
_START_OF_IMAGE = 0xD8


@dataclass(frozen=True)
class ImageFacts:
    mime_type: str
    extension: str
    width: int
    height: int


def inspect_image(path: str, *, allowed_mime_types: list[str], max_dimension: int | None) -> ImageFacts:
    """Identify, bound and fully decode the image at `path`; raise the error of the first rule it breaks:
    format (400 INVALID_IMAGE, 415), pixel cap and decode cost (400 INVALID_IMAGE), dimensions (422), and 503
    SERVER_BUSY when no decoder comes free in time."""
    with open(path, "rb") as file:
        if file.read(len(_JPEG_SIGNATURE)) == _JPEG_SIGNATURE:
            # Before Pillow reads it: opening walks the markers too, in Python and without a cap.
            _ensure_reasonable_jpeg(file)
    found = _inspect(path, allowed_mime_types)
    width, height = found.width, found.height
    if found.refusal == Inspection.NOT_AN_IMAGE:
        raise AppError(400, "INVALID_IMAGE", "The file is not a JPEG, PNG, WebP or HEIC image.")
    mime_type, extension = FORMATS[found.format]
    if found.refusal == Inspection.TYPE_NOT_ALLOWED:
        raise AppError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"{mime_type} images are not accepted here; allowed: {', '.join(allowed_mime_types)}.",
        )
    if found.refusal == Inspection.TOO_MANY_PIXELS:
        raise AppError(
            400,
            "INVALID_IMAGE",
            f"The image has {width}x{height} pixels, more than the "
            f"{settings.APERTUR_MAX_IMAGE_PIXELS:,} this server decodes.",
        )
    if found.refusal == Inspection.CORRUPT:
        raise AppError(400, "INVALID_IMAGE", "The image is truncated or corrupt.")
    if max_dimension is not None and (width > max_dimension or height > max_dimension):
        raise AppError(
            422,
            "DIMENSION_EXCEEDED",
            f"The image is {width}x{height}; this session accepts at most {max_dimension} pixels per side.",
        )
    return ImageFacts(mime_type=mime_type, extension=extension, width=width, height=height)


def _ensure_reasonable_jpeg(file: BinaryIO) -> None:
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        scans, segments = jpeg_scans_and_segments(data, stop_after_scans=MAX_JPEG_SCANS)
    if scans > MAX_JPEG_SCANS:
        raise AppError(
            400,
            "INVALID_IMAGE",
            f"The JPEG has more than {MAX_JPEG_SCANS} scans; cameras write at most a dozen, and each one makes the "
            "whole image decode again.",
        )
    if segments > MAX_JPEG_SEGMENTS:
        raise AppError(
            400, "INVALID_IMAGE", f"The JPEG has more than {MAX_JPEG_SEGMENTS:,} marker segments; cameras write dozens."
        )


def jpeg_scans_and_segments(data: bytes | mmap.mmap, *, stop_after_scans: int) -> tuple[int, int]:
    """Count the scans (SOS segments) and all marker segments libjpeg reads before the first EOI, walking the
    marker structure as libjpeg does: a segment is skipped whole by its length, so bytes inside metadata never
    count; after a scan's header its entropy-coded data is skipped up to the next marker (0xFF then a marker
    byte, where 0xFF 0x00 is data and RSTn belongs to the scan). Stops early once either count passes its cap.
    """
    scans = segments = 0
    position = 2  # after SOI: the caller saw the JPEG signature
    while scans <= stop_after_scans and segments <= MAX_JPEG_SEGMENTS:
        match = _SEGMENT_MARKER.search(data, position)
        if match is None:
            break
        code = data[match.end() - 1]
        if code in (_END_OF_IMAGE, _START_OF_IMAGE):  # libjpeg stops at EOI, and fails on a second SOI
            break
        length = int.from_bytes(data[match.end() : match.end() + 2], "big")
        position = match.end() + max(length, 2)  # a length below 2 is an error libjpeg stops at; move on anyway
        segments += 1
        if code == _START_OF_SCAN:
            scans += 1
    return scans, segments


def _inspect(path: str, allowed_mime_types: list[str]) -> Inspection:
    timeout = settings.APERTUR_DECODE_TIMEOUT_SECONDS
    try:
        return decode_pool().inspect(
            path,
            allowed_mime_types=allowed_mime_types,
            max_pixels=settings.APERTUR_MAX_IMAGE_PIXELS,
            timeout=timeout,
            wait=settings.APERTUR_DECODE_QUEUE_TIMEOUT_SECONDS,
        )
    except DecodeFailed as error:
        raise AppError(400, "INVALID_IMAGE", "The image is truncated or corrupt.") from error
    except DecodeTimedOut as error:
        raise AppError(
            400, "INVALID_IMAGE", f"The image takes more than {timeout:g} s to decode; it is not accepted."
        ) from error
    except DecodersBusy as error:
        raise AppError(
            503,
            "SERVER_BUSY",
            "The server is busy checking other images; try again shortly.",
            headers={"Retry-After": str(max(math.ceil(timeout), 1))},
        ) from error
