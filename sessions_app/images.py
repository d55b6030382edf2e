"""What an uploaded file really is (SPEC §5): sniffed by decoding, never by the declared type."""

import threading
import warnings
from dataclasses import dataclass
from typing import IO

import pillow_heif
from django.conf import settings
from PIL import Image as PillowImage
from PIL import UnidentifiedImageError

from apertur.errors import AppError

pillow_heif.register_heif_opener()

# Pillow format name → (MIME type, extension). HEIF containers are reported as HEIF by pillow-heif.
FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    # A JPEG with extra frames (phones' HDR gain maps, Ultra HDR, stereo): still image/jpeg, and its first
    # frame is the picture. The bytes are stored unchanged.
    "MPO": ("image/jpeg", "jpg"),  # no opener of its own: the JPEG opener returns it
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "HEIF": ("image/heic", "heic"),
}
OPENERS = ["JPEG", "PNG", "WEBP", "HEIF"]
# A full decode holds every pixel: up to ~200 MB for a 50 MP RGBA image. Bounding how many run at once per
# process bounds that memory whatever the number of parallel uploads (the others wait their turn).
_DECODE_SLOTS = threading.BoundedSemaphore(settings.APERTUR_DECODE_CONCURRENCY)


@dataclass(frozen=True)
class ImageFacts:
    mime_type: str
    extension: str
    width: int
    height: int


def inspect_image(stream: IO[bytes], *, allowed_mime_types: list[str], max_dimension: int | None) -> ImageFacts:
    """Identify, bound and fully decode the image; raise the SPEC §5 error for the first rule it breaks."""
    # Pillow's own bomb guard would fire at 2x its limit with an opaque error; we check our cap ourselves.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PillowImage.DecompressionBombWarning)
        try:
            image = PillowImage.open(stream, formats=OPENERS)
        except (UnidentifiedImageError, PillowImage.DecompressionBombError, OSError, ValueError) as error:
            raise AppError(400, "INVALID_IMAGE", "The file is not a JPEG, PNG, WebP or HEIC image.") from error
        with image:
            mime_type, extension = FORMATS[image.format]
            if mime_type not in allowed_mime_types:
                raise AppError(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"{mime_type} images are not accepted here; allowed: {', '.join(allowed_mime_types)}.",
                )
            width, height = image.size
            if width * height > settings.APERTUR_MAX_IMAGE_PIXELS:
                raise AppError(
                    400,
                    "INVALID_IMAGE",
                    f"The image has {width}x{height} pixels, more than the "
                    f"{settings.APERTUR_MAX_IMAGE_PIXELS:,} this server decodes.",
                )
            _decode_fully(image)
    if max_dimension is not None and (width > max_dimension or height > max_dimension):
        raise AppError(
            422,
            "DIMENSION_EXCEEDED",
            f"The image is {width}x{height}; this session accepts at most {max_dimension} pixels per side.",
        )
    return ImageFacts(mime_type=mime_type, extension=extension, width=width, height=height)


def _decode_fully(image: PillowImage.Image) -> None:
    """Decode every byte so truncated or corrupt files are refused now, not at the destination."""
    if image.format in {"JPEG", "MPO"}:
        # draft() makes libjpeg decode at 1/8 scale: all entropy-coded data is still read and checked.
        image.draft("RGB", (max(image.width // 8, 1), max(image.height // 8, 1)))
    try:
        with _DECODE_SLOTS:
            image.load()
    # pillow-heif reports a corrupt HEVC bitstream as EOFError, which is not an OSError.
    except (OSError, EOFError, ValueError, SyntaxError, PillowImage.DecompressionBombError) as error:
        raise AppError(400, "INVALID_IMAGE", "The image is truncated or corrupt.") from error
