"""The work one upload can cause is bounded (docs/api.md "Uploading images"): JPEGs with more scans than any
camera writes are refused before decoding, every decode has a deadline after which its process is killed, and
the wait for a free decoder ends in 503 SERVER_BUSY. Honest 50-megapixel photos still pass."""

import io
import os
import time
import zlib
from collections.abc import Iterator
from struct import pack

import pytest
from PIL import Image as PillowImage

from sessions_app import decoding
from sessions_app.decoding import DecodePool
from sessions_app.images import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS
from sessions_app.models import Image
from tests.factories import image_bytes, noisy_jpeg
from tests.sessions_app.helpers import create_session, upload

HOSTILE_SIDE = 7000  # 49 megapixels: under the pixel cap, so only the scans make it expensive


@pytest.fixture
def decode_pool(monkeypatch) -> Iterator[DecodePool]:
    """A pool of one decoder for this test alone, so a test can hold or observe it."""
    pool = DecodePool(1)
    monkeypatch.setattr(decoding, "_pool", pool)
    yield pool
    pool.close()


def jpeg(size: tuple[int, int], *, progressive: bool) -> bytes:
    """A flat-colour JPEG: its scans are tiny, so repeating one costs bytes and no realism."""
    buffer = io.BytesIO()
    PillowImage.new("RGB", size, (120, 130, 140)).save(buffer, format="JPEG", progressive=progressive, quality=85)
    return buffer.getvalue()


def photo_like_jpeg(size: tuple[int, int], *, progressive: bool) -> bytes:
    """Random texture scaled up 4x: entropy-coded data of a real photo's size (17-19 MB at 50 megapixels), so the
    decode costs what a real photo's does."""
    coarse = (size[0] // 4, size[1] // 4)
    bands = [
        PillowImage.frombytes("L", coarse, os.urandom(coarse[0] * coarse[1])).resize(size, PillowImage.BILINEAR)
        for _ in range(3)
    ]
    buffer = io.BytesIO()
    PillowImage.merge("RGB", bands).save(buffer, format="JPEG", progressive=progressive, quality=85)
    return buffer.getvalue()


def with_last_scan_repeated(data: bytes, times: int) -> bytes:
    """Byte surgery: the last scan (SOS header and its entropy-coded data, up to EOI) sent `times` more times.

    Pillow writes no 0xFF 0xDA inside entropy-coded data (0xFF is always stuffed), so the last one starts the
    last scan; libjpeg decodes every copy, each a pass over the whole image.
    """
    assert data.endswith(b"\xff\xd9")
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last_scan * times + data[-2:]


def with_segments_after_start(data: bytes, segments: bytes) -> bytes:
    """Marker segments inserted right after SOI (where APPn and COM segments live)."""
    return data[:2] + segments + data[2:]


def comment(payload: bytes) -> bytes:
    return b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return pack(">I", len(payload)) + kind + payload + pack(">I", zlib.crc32(kind + payload))


def assert_invalid_image(response, *words: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["code"], body["statusCode"]) == ("INVALID_IMAGE", 400)
    assert all(word in body["message"] for word in words), body["message"]


def decoder_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def hostile_jpeg() -> bytes:
    """A ~330 KB progressive 7000x7000 JPEG whose last scan is repeated 600 times: minutes of CPU to decode."""
    return with_last_scan_repeated(jpeg((HOSTILE_SIDE, HOSTILE_SIDE), progressive=True), 600)


# --- too many scans --------------------------------------------------------------------------------


def test_jpeg_repeating_a_scan_hundreds_of_times_is_refused_fast_without_decoding(api_client, owner, hostile_jpeg):
    session = create_session(api_client, owner)
    assert len(hostile_jpeg) < 400_000

    started = time.monotonic()
    response = upload(api_client, session["id"], hostile_jpeg)
    elapsed = time.monotonic() - started

    assert_invalid_image(response, f"more than {MAX_JPEG_SCANS} scans")
    assert elapsed < 2, elapsed
    assert not Image.objects.exists()


def test_scans_behind_an_end_marker_inside_metadata_are_still_counted(api_client, owner, hostile_jpeg):
    # A byte search for scans that stopped at the first 0xFF 0xD9 would stop inside this comment.
    session = create_session(api_client, owner)
    disguised = with_segments_after_start(hostile_jpeg, comment(b"\xff\xd9 not the end"))

    assert_invalid_image(upload(api_client, session["id"], disguised), "scans")


def test_scans_after_fill_bytes_are_still_counted(api_client, owner):
    # libjpeg skips any number of 0xFF fill bytes before a marker.
    data = jpeg((64, 64), progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    padded = data[:-2] + (b"\xff\xff\xff" + last_scan) * MAX_JPEG_SCANS + data[-2:]
    session = create_session(api_client, owner)

    assert_invalid_image(upload(api_client, session["id"], padded), "scans")


def test_scan_markers_inside_metadata_do_not_count(api_client, owner):
    session = create_session(api_client, owner)
    data = with_segments_after_start(noisy_jpeg((64, 48)), comment(b"\xff\xda" * 1000))

    response = upload(api_client, session["id"], data)

    assert response.status_code == 201, response.content


def test_restart_markers_inside_a_scan_do_not_count(api_client, owner):
    buffer = io.BytesIO()
    PillowImage.effect_noise((512, 512), 64).convert("RGB").save(buffer, format="JPEG", restart_marker_blocks=1)
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], buffer.getvalue())

    assert response.status_code == 201, response.content


def test_jpeg_made_of_countless_tiny_segments_is_refused_before_pillow_walks_them(api_client, owner):
    # 16 MB of empty comments: Pillow's opener would spend seconds of the web process's CPU walking them.
    session = create_session(api_client, owner)
    data = with_segments_after_start(noisy_jpeg((64, 48)), comment(b"") * 4_000_000)

    started = time.monotonic()
    response = upload(api_client, session["id"], data)

    assert_invalid_image(response, f"more than {MAX_JPEG_SEGMENTS:,} marker segments")
    assert time.monotonic() - started < 1.5


# --- the decode deadline ---------------------------------------------------------------------------


def test_decode_past_its_deadline_is_refused_and_its_process_killed(api_client, owner, settings, decode_pool):
    # As many scans as allowed on a big image: seconds of decoding, which the deadline cuts short.
    slow = with_last_scan_repeated(jpeg((HOSTILE_SIDE, HOSTILE_SIDE), progressive=True), MAX_JPEG_SCANS - 10)
    settings.APERTUR_DECODE_TIMEOUT_SECONDS = 0.25  # far below the seconds this decode takes
    session = create_session(api_client, owner)
    with decode_pool.decoder(wait=0) as decoder:  # started ahead, so the measured call is the decode alone
        pid = decoder.process.pid

    started = time.monotonic()
    response = upload(api_client, session["id"], slow)
    elapsed = time.monotonic() - started

    assert_invalid_image(response, "more than 0.25 s to decode")
    assert elapsed < 1.25, elapsed
    assert decoder_is_gone(pid)
    assert not Image.objects.exists()
    assert upload(api_client, session["id"], image_bytes()).status_code == 201  # a fresh decoder takes over


def test_opening_a_file_of_countless_tiny_chunks_is_bounded_by_the_deadline(api_client, owner, settings):
    # Pillow reads PNG chunks one by one in Python: a million empty private chunks (12 MB) take seconds to open.
    png = image_bytes("PNG")
    header_end = 8 + 25  # signature and IHDR
    chunks = png[:header_end] + png_chunk(b"prVt", b"") * 1_000_000 + png[header_end:]
    settings.APERTUR_DECODE_TIMEOUT_SECONDS = 0.25
    session = create_session(api_client, owner)

    started = time.monotonic()
    response = upload(api_client, session["id"], chunks, name="a.png")

    assert_invalid_image(response, "more than 0.25 s to decode")
    assert time.monotonic() - started < 1.25  # no unbounded open in the web process first


def test_waiting_too_long_for_a_decoder_is_503_server_busy_with_retry_after(api_client, owner, settings, decode_pool):
    settings.APERTUR_DECODE_QUEUE_TIMEOUT_SECONDS = 0.2
    session = create_session(api_client, owner)

    with decode_pool.decoder(wait=0):  # the only decoder is busy
        started = time.monotonic()
        response = upload(api_client, session["id"], image_bytes())
        elapsed = time.monotonic() - started

    assert response.status_code == 503, response.content
    assert response.json() == {
        "message": "The server is busy checking other images; try again shortly.",
        "code": "SERVER_BUSY",
        "statusCode": 503,
        "error": "Service Unavailable",
    }
    assert response["Retry-After"] == "10"  # the decode deadline: by then a decoder is free
    assert elapsed < 1, elapsed
    assert api_client.get(f"/api/v1/upload/{session['id']}/session").json()["imagesCount"] == 0
    assert upload(api_client, session["id"], image_bytes()).status_code == 201


# --- honest photos ---------------------------------------------------------------------------------


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_an_honest_50_megapixel_photo_passes(api_client, owner, progressive):
    data = photo_like_jpeg((8660, 5773), progressive=progressive)
    assert 10 * 1024 * 1024 < len(data) < 20 * 1024 * 1024
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], data, name="big.jpg")

    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (8660, 5773)
