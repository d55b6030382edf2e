"""Image files are opened and fully decoded in child processes: each inspection has a deadline, and so has the
wait for a free child.

Why processes: a decode is one call into libjpeg, libheif or libwebp that Python cannot interrupt. A thread that
outlives its deadline keeps a core busy until the decoder returns (tens of seconds for a hostile progressive
JPEG), and feeding Pillow's decoder in chunks would bound JPEG and PNG only: HEIF and WebP decode in a single
call. Opening happens there too: Pillow reads JPEG markers and PNG chunks one by one in Python, seconds for a
file made of millions of tiny ones. A child process is killed at its deadline whatever the format, and a decoder
that crashes on hostile bytes takes the child down, not the web server. The children are few
(`APERTUR_DECODE_CONCURRENCY`, which also bounds the memory full decodes hold), long-lived, and replaced only
after a kill or a crash; the file travels by path.

The child's side reads no Django setting: the limits travel with each request.
"""

import io
import logging
import multiprocessing
import queue
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection

import pillow_heif
from django.conf import settings
from PIL import Image as PillowImage
from PIL import ImageOps

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
# Errors Pillow and its plugins raise for bytes they cannot decode; pillow-heif reports a corrupt HEVC
# bitstream as EOFError, which is not an OSError.
DECODE_ERRORS = (OSError, EOFError, ValueError, SyntaxError, PillowImage.DecompressionBombError)
CHILD_START_TIMEOUT_SECONDS = 60  # importing Pillow and libheif, on a loaded machine

pillow_heif.register_heif_opener()
logger = logging.getLogger(__name__)


class DecodeFailed(Exception):
    """The child stopped while inspecting the bytes: a decoder crash on them, or killed for its memory."""


class DecodeTimedOut(Exception):
    """The inspection passed its deadline; its process was killed."""


class DecodersBusy(Exception):
    """No decoder came free within the wait allowed."""


@dataclass(frozen=True)
class Inspection:
    """What a child found in a file. `refusal` names the first rule the file breaks; None: it decoded fully."""

    NOT_AN_IMAGE = "not an image"
    TYPE_NOT_ALLOWED = "type not allowed"
    TOO_MANY_PIXELS = "too many pixels"
    CORRUPT = "corrupt"

    format: str | None = None  # Pillow's name (a key of FORMATS)
    width: int = 0
    height: int = 0
    refusal: str | None = None
    detail: str = ""


def inspect_file(path: str, *, allowed_mime_types: list[str], max_pixels: int) -> Inspection:
    """Identify the image, check its type and pixel count, then decode every byte, so truncated or corrupt files
    are refused now, not at the destination. Runs in the child."""
    # The pixel cap is checked below, with a clear error, before any decode; Pillow's own guard would warn first.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PillowImage.DecompressionBombWarning)
        try:
            image = PillowImage.open(path, formats=OPENERS)
        except DECODE_ERRORS as error:  # UnidentifiedImageError is an OSError
            return Inspection(refusal=Inspection.NOT_AN_IMAGE, detail=f"{type(error).__name__}: {error}")
    with image:
        found = Inspection(format=image.format, width=image.width, height=image.height)
        if FORMATS[image.format][0] not in allowed_mime_types:
            return replace(found, refusal=Inspection.TYPE_NOT_ALLOWED)
        if image.width * image.height > max_pixels:
            return replace(found, refusal=Inspection.TOO_MANY_PIXELS)
        if image.format in {"JPEG", "MPO"}:
            # draft() makes libjpeg decode at 1/8 scale: all entropy-coded data is still read and checked.
            image.draft("RGB", (max(image.width // 8, 1), max(image.height // 8, 1)))
        try:
            image.load()
        except DECODE_ERRORS as error:
            return replace(found, refusal=Inspection.CORRUPT, detail=f"{type(error).__name__}: {error}")
    return found


def make_thumbnail(path: str, *, size: int) -> bytes | None:
    """A JPEG of the image at most `size` pixels on its longer side, turned as its EXIF orientation says; None
    when the file cannot be read as an image. Runs in the child: a dashboard's thumbnails cost a decode too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PillowImage.DecompressionBombWarning)
        try:
            with PillowImage.open(path, formats=OPENERS) as image:
                image.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size
                image.thumbnail((size, size))  # reduces before resampling where the format allows
                small = ImageOps.exif_transpose(image).convert("RGB")
        except DECODE_ERRORS:
            return None
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


OPERATIONS = {"inspect": inspect_file, "thumbnail": make_thumbnail}


def _serve(connection: Connection) -> None:
    """The child: run each operation it is sent on the file it names and answer what it found."""
    # Ctrl-C reaches the whole process group; the parent stops its children itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection.send("ready")
    while True:
        try:
            operation, path, arguments = connection.recv()
        except EOFError:  # the parent went away
            return
        connection.send(OPERATIONS[operation](path, **arguments))


class _Decoder:
    """One child process and the pipe to it. `busy` while a request is unanswered: such a pipe is out of step
    and the process must be stopped, never reused."""

    def __init__(self) -> None:
        # spawn, not fork: the web process has threads and open database and Redis connections.
        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end,), name="apertur-image-decoder", daemon=True)
        self.process.start()
        child_end.close()
        self.busy = True
        if not self.connection.poll(CHILD_START_TIMEOUT_SECONDS) or self.connection.recv() != "ready":
            self.stop()
            raise RuntimeError("the image decoder process did not start")
        self.busy = False

    def inspect(self, path: str, *, allowed_mime_types: list[str], max_pixels: int, timeout: float) -> Inspection:
        limits = {"allowed_mime_types": allowed_mime_types, "max_pixels": max_pixels}
        return self.run("inspect", path, limits, timeout=timeout)

    def run(self, operation: str, path: str, arguments: dict, *, timeout: float):
        self.busy = True
        try:
            self.connection.send((operation, path, arguments))
            if not self.connection.poll(timeout):
                logger.warning("Image %s passed its %g s deadline; process stopped: %s", operation, timeout, path)
                raise DecodeTimedOut
            answer = self.connection.recv()
        # The child died on these bytes (a decoder crash, or killed for its memory), or just before we sent them.
        except (EOFError, OSError) as error:
            self.process.join(timeout=1)
            logger.warning("Image decoder exited (code %s) during %s of %s", self.process.exitcode, operation, path)
            raise DecodeFailed(f"the decoder stopped (exit code {self.process.exitcode})") from error
        self.busy = False
        return answer

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class DecodePool:
    """`size` decoder processes, started when first needed. A decoder serves one decode at a time."""

    def __init__(self, size: int) -> None:
        # None: a slot whose process is not running (not started yet, or stopped after a timeout or crash).
        # Last in, first out: a warm decoder is reused before another process is started.
        self._idle: queue.LifoQueue[_Decoder | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)

    @contextmanager
    def decoder(self, *, wait: float) -> Iterator[_Decoder]:
        """Hold a running decoder for the block; DecodersBusy when none comes free within `wait` seconds.
        A decoder left mid-request (a timeout, a crash, any exception) is stopped; its slot restarts on next use."""
        try:
            decoder = self._idle.get(timeout=wait)
        except queue.Empty:
            raise DecodersBusy from None
        try:
            if decoder is not None and not decoder.process.is_alive():  # died while idle (the OOM killer)
                decoder.stop()
                decoder = None
            if decoder is None:
                decoder = _Decoder()
            yield decoder
        finally:
            if decoder is not None and (decoder.busy or not decoder.process.is_alive()):
                decoder.stop()
                decoder = None
            self._idle.put(decoder)

    def close(self) -> None:
        """Stop the decoders that are idle; the pool has no slot left afterwards."""
        while True:
            try:
                decoder = self._idle.get_nowait()
            except queue.Empty:
                return
            if decoder is not None:
                decoder.stop()

    def inspect(
        self, path: str, *, allowed_mime_types: list[str], max_pixels: int, timeout: float, wait: float
    ) -> Inspection:
        """`inspect_file` in a child process within `timeout` seconds, after waiting at most `wait` seconds for a
        free one. Raises DecodeFailed, DecodeTimedOut or DecodersBusy."""
        with self.decoder(wait=wait) as decoder:
            return decoder.inspect(path, allowed_mime_types=allowed_mime_types, max_pixels=max_pixels, timeout=timeout)

    def thumbnail(self, path: str, *, size: int, timeout: float, wait: float) -> bytes | None:
        """`make_thumbnail` in a child process, with the same deadlines as `inspect`."""
        with self.decoder(wait=wait) as decoder:
            return decoder.run("thumbnail", path, {"size": size}, timeout=timeout)


_pool: DecodePool | None = None
_pool_lock = threading.Lock()


def decode_pool() -> DecodePool:
    """The process's pool, sized by APERTUR_DECODE_CONCURRENCY when first used."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecodePool(settings.APERTUR_DECODE_CONCURRENCY)
        return _pool
