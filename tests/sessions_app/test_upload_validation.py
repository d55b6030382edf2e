"""POST /api/v1/upload/{id}/images (docs/api.md "Uploading images"): each rule with its error, in the order
docs/api.md "Uploading images" gives."""

import hashlib
import io
import multiprocessing
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PillowImage

from sessions_app.models import Image, UploadSession
from tests.factories import image_bytes, noisy_jpeg
from tests.sessions_app.helpers import (
    create_session,
    multipart_part,
    png_decompression_bomb,
    upload,
    upload_parts,
    upload_raw_part,
    webhook_destination,
)

MEBIBYTE = 1024 * 1024


@pytest.fixture
def upload_temp_dir(settings, tmp_path) -> Path:
    """Where the upload handler spools request bodies, so a test can see that nothing is left behind."""
    directory = tmp_path / "upload-tmp"
    directory.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(directory)
    return directory


def staged_files(settings) -> list[Path]:
    return [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]


def images_count(api_client, session_id: str) -> int:
    return api_client.get(f"/api/v1/upload/{session_id}/session").json()["imagesCount"]


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert (body["code"], body["statusCode"]) == (code, status)
    assert body["message"]


def expire(session_id: str) -> None:
    UploadSession.objects.filter(pk=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def fill(api_client, session_id: str, count: int, **extra) -> None:
    for _ in range(count):
        assert upload(api_client, session_id, image_bytes(), **extra).status_code == 201


# --- each rule -------------------------------------------------------------------------------------


def test_upload_into_an_unknown_session_is_404(api_client, db):
    assert_error(upload(api_client, "sess_01J00000000000000000000000", image_bytes()), 404, "NOT_FOUND")


def test_upload_into_an_expired_session_is_410_and_the_session_shows_expired(api_client, owner):
    session = create_session(api_client, owner)
    expire(session["id"])

    assert_error(upload(api_client, session["id"], image_bytes()), 410, "SESSION_EXPIRED")
    assert api_client.get(f"/api/v1/upload/{session['id']}/session").json()["status"] == "expired"


def test_completing_an_expired_session_is_410(api_client, owner):
    session = create_session(api_client, owner)
    expire(session["id"])

    assert_error(api_client.post(f"/api/v1/upload/{session['id']}/complete"), 410, "SESSION_EXPIRED")


def test_upload_into_a_completed_session_is_409(api_client, owner):
    session = create_session(api_client, owner)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    assert api_client.post(f"/api/v1/upload/{session['id']}/complete").status_code == 200

    assert_error(upload(api_client, session["id"], image_bytes()), 409, "SESSION_CLOSED")


def test_upload_into_a_protected_session_without_password_is_401_password_required(api_client, owner):
    session = create_session(api_client, owner, password="open sesame")

    assert_error(upload(api_client, session["id"], image_bytes()), 401, "PASSWORD_REQUIRED")


def test_upload_with_a_wrong_password_is_401_invalid_password(api_client, owner):
    session = create_session(api_client, owner, password="open sesame")

    response = upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD="wrong guess")

    assert_error(response, 401, "INVALID_PASSWORD")


def test_upload_into_a_full_session_is_422_session_full(api_client, owner):
    session = create_session(api_client, owner, max_images=2)
    fill(api_client, session["id"], 2)

    assert_error(upload(api_client, session["id"], image_bytes()), 422, "SESSION_FULL")
    assert Image.objects.filter(session_id=session["id"]).count() == 2


def test_upload_larger_than_the_session_limit_is_413_before_the_body_is_read(api_client, owner):
    session = create_session(api_client, owner)
    api_client.patch(f"/api/v1/upload-sessions/{session['id']}", {"max_image_size_mb": 1}, format="json", **owner.auth)

    response = upload(api_client, session["id"], noisy_jpeg() + bytes(2 * MEBIBYTE))

    assert_error(response, 413, "FILE_TOO_LARGE")


def test_upload_just_over_the_limit_is_413_while_streaming(api_client, owner, settings, upload_temp_dir):
    # Within the multipart allowance of the Content-Length pre-check, so the streaming handler must catch it.
    session = create_session(api_client, owner)
    api_client.patch(f"/api/v1/upload-sessions/{session['id']}", {"max_image_size_mb": 1}, format="json", **owner.auth)
    data = noisy_jpeg()
    data += bytes(MEBIBYTE + 1 - len(data))

    response = upload(api_client, session["id"], data)

    assert_error(response, 413, "FILE_TOO_LARGE")
    assert images_count(api_client, session["id"]) == 0
    assert list(upload_temp_dir.iterdir()) == []
    assert staged_files(settings) == []


def test_upload_of_exactly_the_limit_is_accepted(api_client, owner):
    session = create_session(api_client, owner)
    api_client.patch(f"/api/v1/upload-sessions/{session['id']}", {"max_image_size_mb": 1}, format="json", **owner.auth)
    data = noisy_jpeg()
    data += bytes(MEBIBYTE - len(data))  # JPEG decoders ignore what follows the end-of-image marker

    response = upload(api_client, session["id"], data)

    assert response.status_code == 201, response.content
    assert response.json()["size_bytes"] == MEBIBYTE


def test_default_size_limit_is_20_mb(api_client, owner, settings):
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], bytes(20 * MEBIBYTE + 1))

    assert_error(response, 413, "FILE_TOO_LARGE")


def test_png_declared_as_jpeg_into_a_jpeg_only_session_is_415(api_client, owner):
    session = create_session(api_client, owner, allowed_mime_types=["image/jpeg"])

    response = upload(api_client, session["id"], image_bytes("PNG"), name="photo.jpg", content_type="image/jpeg")

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_jpeg_declared_as_png_is_identified_by_its_bytes(api_client, owner):
    session = create_session(api_client, owner, allowed_mime_types=["image/jpeg"])

    response = upload(api_client, session["id"], image_bytes("JPEG"), name="photo.png", content_type="image/png")

    assert response.status_code == 201, response.content
    assert response.json()["mime_type"] == "image/jpeg"


def truncated_jpeg() -> bytes:
    data = noisy_jpeg()
    return data[: len(data) // 2]


def corrupt_heic() -> bytes:
    # The container parses, but the coded picture is all zeros: the decoder fails while decoding.
    data = image_bytes("HEIF")
    payload_start = data.index(b"mdat") + 4
    return data[:payload_start] + bytes(len(data) - payload_start)


@pytest.mark.parametrize(
    "data",
    [
        b"this is not an image, just some text\n" * 10,
        b"",
        truncated_jpeg(),
        image_bytes("PNG")[:60],
        corrupt_heic(),
        image_bytes("GIF"),
    ],
    ids=["text", "empty", "truncated jpeg", "truncated png", "corrupt heic", "gif"],
)
def test_bytes_that_are_not_a_decodable_supported_image_are_400_invalid_image(api_client, owner, data):
    session = create_session(api_client, owner)

    assert_error(upload(api_client, session["id"], data), 400, "INVALID_IMAGE")


def test_image_over_the_pixel_cap_is_400(api_client, owner, settings):
    settings.APERTUR_MAX_IMAGE_PIXELS = 1000
    session = create_session(api_client, owner)

    assert_error(upload(api_client, session["id"], image_bytes(size=(64, 48))), 400, "INVALID_IMAGE")
    assert upload(api_client, session["id"], image_bytes(size=(40, 25))).status_code == 201


def test_png_over_the_default_50_megapixel_cap_is_400(api_client, owner):
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], png_decompression_bomb(8000), name="big.png")  # 64 MP

    assert_error(response, 400, "INVALID_IMAGE")


def decoder_peaks_kib() -> dict[int, int]:
    """The peak resident memory (VmHWM) of each image decoder process: images are decoded there, not here."""
    peaks = {}
    for child in multiprocessing.active_children():
        if child.name == "apertur-image-decoder":
            status = Path(f"/proc/{child.pid}/status").read_text()
            peaks[child.pid] = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    return peaks


def decoder_peak_growth_mib(call) -> tuple[object, float]:
    """Run `call`; return its result and how far the decoders' peak memory rose. Writing 5 to clear_refs resets a
    process's peak to its current size (tracemalloc would not do: Pillow's pixels come from the C allocator)."""
    for pid in decoder_peaks_kib():
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = decoder_peaks_kib()
    result = call()
    after = decoder_peaks_kib()
    return result, max(after[pid] - before.get(pid, after[pid]) for pid in after) / 1024


@pytest.fixture
def warm_decoders(api_client, owner):
    """A session, after one upload has started the decoder processes."""
    session = create_session(api_client, owner)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    return session


def test_real_decompression_bomb_is_400_without_being_decoded(api_client, warm_decoders):
    # 400 megapixels in ~50 KB: decoding it would take 400 MB.
    bomb = png_decompression_bomb(20000)
    assert len(bomb) < 100_000

    response, growth_mib = decoder_peak_growth_mib(
        lambda: upload(api_client, warm_decoders["id"], bomb, name="bomb.png", content_type="image/png")
    )

    assert_error(response, 400, "INVALID_IMAGE")
    assert growth_mib < 20


def test_the_decoder_memory_measure_sees_a_real_decode(api_client, warm_decoders):
    # The control for the test above: 40 megapixels, under the cap, decoded to one byte per pixel (40 MB).
    response, growth_mib = decoder_peak_growth_mib(
        lambda: upload(api_client, warm_decoders["id"], png_decompression_bomb(6325), name="big.png")
    )

    assert response.status_code == 201, response.content
    assert growth_mib > 30


def test_image_wider_or_taller_than_max_image_dimension_is_422(api_client, owner):
    session = create_session(api_client, owner, max_image_dimension=50)

    assert_error(upload(api_client, session["id"], image_bytes(size=(51, 10))), 422, "DIMENSION_EXCEEDED")
    assert_error(upload(api_client, session["id"], image_bytes(size=(10, 51))), 422, "DIMENSION_EXCEEDED")
    assert upload(api_client, session["id"], image_bytes(size=(50, 50))).status_code == 201


def test_heic_is_accepted_as_image_heic(api_client, owner):
    session = create_session(api_client, owner)
    data = image_bytes("HEIF", size=(64, 48))

    response = upload(api_client, session["id"], data, name="IMG_0001.HEIC", content_type="image/heic")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["mime_type"], body["width"], body["height"]) == ("image/heic", 64, 48)
    assert body["filename"] == "IMG_0001.HEIC"


def test_a_multi_picture_jpeg_from_a_phone_is_accepted_as_image_jpeg_unchanged(api_client, owner):
    # HDR gain-map and Ultra HDR photos are JPEGs with extra frames, which Pillow calls MPO.
    frames = [PillowImage.new("RGB", (64, 48), colour) for colour in ((200, 30, 30), (30, 30, 200))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="MPO", save_all=True, append_images=frames[1:])
    session = create_session(api_client, owner, allowed_mime_types=["image/jpeg"])

    response = upload(api_client, session["id"], buffer.getvalue(), name="IMG_0002.JPG")

    assert response.status_code == 201, response.content
    assert (response.json()["mime_type"], response.json()["width"]) == ("image/jpeg", 64)
    assert response.json()["sha256"] == hashlib.sha256(buffer.getvalue()).hexdigest()


def test_webp_is_accepted_as_image_webp(api_client, owner):
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], image_bytes("WEBP"), name="a.webp", content_type="image/webp")

    assert response.status_code == 201, response.content
    assert response.json()["mime_type"] == "image/webp"


def test_missing_file_part_is_400_validation_error(api_client, owner):
    session = create_session(api_client, owner)

    response = api_client.post(f"/api/v1/upload/{session['id']}/images", {"source": "camera"}, format="multipart")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert "file" in response.json()["fields"]


@pytest.mark.parametrize("extra_first", [True, False], ids=["before the image", "after the image"])
def test_other_file_parts_are_ignored(api_client, owner, extra_first):
    # A page with a second file input, or a client sending `source` as a file, must not spoil the image.
    session = create_session(api_client, owner)
    data = image_bytes("PNG")
    image = multipart_part('name="file"; filename="a.png"', data, "image/png")
    extra = multipart_part('name="thumbnail"; filename="t.jpg"', image_bytes())

    response = upload_parts(api_client, session["id"], *((extra, image) if extra_first else (image, extra)))

    assert response.status_code == 201, response.content
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_source_part_is_read_next_to_the_file(api_client, owner):
    session = create_session(api_client, owner)

    response = upload_parts(
        api_client,
        session["id"],
        multipart_part('name="source"', b"gallery", "text/plain"),
        multipart_part('name="file"; filename="a.jpg"', image_bytes()),
    )

    assert response.status_code == 201, response.content
    assert Image.objects.get(pk=response.json()["id"]).source == "gallery"


def test_authorization_header_on_an_upload_is_ignored(api_client, owner):
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], image_bytes(), HTTP_AUTHORIZATION="Bearer aptr_live_not-a-real-key")

    assert response.status_code == 201, response.content


# --- the order of the rules ------------------------------------------------------------------------


def test_expired_wins_over_closed(api_client, owner):
    session = create_session(api_client, owner)
    api_client.post(f"/api/v1/upload/{session['id']}/complete")
    UploadSession.objects.filter(pk=session["id"]).update(
        closed_at=None, close_reason="", expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert_error(upload(api_client, session["id"], b"not an image"), 410, "SESSION_EXPIRED")


def test_closed_is_checked_before_the_password(api_client, owner):
    session = create_session(api_client, owner, password="open sesame")
    api_client.post(f"/api/v1/upload/{session['id']}/complete", HTTP_X_SESSION_PASSWORD="open sesame")

    assert_error(upload(api_client, session["id"], image_bytes()), 409, "SESSION_CLOSED")


def test_password_is_checked_before_the_image_count(api_client, owner):
    session = create_session(api_client, owner, password="open sesame", max_images=1)
    fill(api_client, session["id"], 1, HTTP_X_SESSION_PASSWORD="open sesame")

    assert_error(upload(api_client, session["id"], image_bytes()), 401, "PASSWORD_REQUIRED")
    assert_error(
        upload(api_client, session["id"], image_bytes(), HTTP_X_SESSION_PASSWORD="open sesame"), 422, "SESSION_FULL"
    )


def test_image_count_is_checked_before_the_size(api_client, owner):
    session = create_session(api_client, owner, max_images=1)
    fill(api_client, session["id"], 1)

    assert_error(upload(api_client, session["id"], bytes(21 * MEBIBYTE)), 422, "SESSION_FULL")


def test_size_is_checked_before_the_content(api_client, owner):
    session = create_session(api_client, owner)

    assert_error(upload(api_client, session["id"], b"x" * (20 * MEBIBYTE + 1)), 413, "FILE_TOO_LARGE")


def test_format_is_checked_before_the_dimensions(api_client, owner):
    session = create_session(api_client, owner, allowed_mime_types=["image/jpeg"], max_image_dimension=10)

    assert_error(upload(api_client, session["id"], image_bytes("PNG", size=(64, 48))), 415, "UNSUPPORTED_MEDIA_TYPE")


def test_pixel_cap_is_checked_before_the_dimensions(api_client, owner):
    session = create_session(api_client, owner, max_image_dimension=10)

    assert_error(upload(api_client, session["id"], png_decompression_bomb(20000)), 400, "INVALID_IMAGE")


def test_corruption_is_checked_before_the_dimensions(api_client, owner):
    session = create_session(api_client, owner, max_image_dimension=10)

    assert_error(upload(api_client, session["id"], truncated_jpeg()), 400, "INVALID_IMAGE")


# --- refusals leave nothing behind -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (image_bytes("PNG"), 415),
        (b"not an image", 400),
        (truncated_jpeg(), 400),
        (image_bytes(size=(300, 300)), 422),
    ],
    ids=["415 wrong type", "400 text", "400 truncated", "422 dimension"],
)
def test_refused_upload_consumes_no_slot_and_leaves_no_file(api_client, owner, settings, upload_temp_dir, data, status):
    session = create_session(
        api_client, owner, max_images=1, allowed_mime_types=["image/jpeg"], max_image_dimension=200
    )

    assert upload(api_client, session["id"], data).status_code == status

    assert images_count(api_client, session["id"]) == 0
    assert not Image.objects.filter(session_id=session["id"]).exists()
    assert staged_files(settings) == []
    assert list(upload_temp_dir.iterdir()) == []
    assert upload(api_client, session["id"], image_bytes()).status_code == 201  # the one slot is still free


def test_upload_refused_as_full_under_the_lock_removes_its_staged_file(api_client, owner, settings, monkeypatch):
    # Two phones race for the last slot: this one passes the early count check and stages its bytes,
    # meanwhile the other takes the slot, so the check under the lock refuses it.
    from sessions_app import services

    session = create_session(api_client, owner, max_images=1)
    real_check = services.ensure_room_for_image
    calls = []

    def check_then_let_another_upload_win(*, session):
        real_check(session=session)
        if not calls:
            calls.append(session.pk)
            UploadSession.objects.filter(pk=session.pk).update(images_count=1)

    monkeypatch.setattr(services, "ensure_room_for_image", check_then_let_another_upload_win)

    response = upload(api_client, session["id"], image_bytes())

    assert_error(response, 422, "SESSION_FULL")
    assert calls == [session["id"]]
    assert staged_files(settings) == []


# --- the 201 document ------------------------------------------------------------------------------


def test_accepted_upload_document_has_the_spec_shape(api_client, owner):
    first, second = webhook_destination(owner, name="one"), webhook_destination(owner, name="two")
    session = create_session(api_client, owner, destination_ids=[str(first.pk), str(second.pk)], long_polling=False)
    data = noisy_jpeg((320, 240))

    response = upload(api_client, session["id"], data, name="holiday.jpg")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("img_") and len(body["id"]) == len("img_") + 26
    assert body["image_index"] == 0
    assert body["filename"] == "holiday.jpg"
    assert body["mime_type"] == "image/jpeg"
    assert body["size_bytes"] == len(data)
    assert (body["width"], body["height"]) == (320, 240)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["destinations"] == 2
    assert body["long_polling"] is False


def test_image_indexes_count_up_from_zero_and_the_session_starts_uploading(api_client, owner):
    session = create_session(api_client, owner, max_images=3)

    indexes = [upload(api_client, session["id"], image_bytes()).json()["image_index"] for _ in range(3)]

    assert indexes == [0, 1, 2]
    assert images_count(api_client, session["id"]) == 3


def test_first_upload_moves_the_session_from_pending_to_uploading(api_client, owner):
    session = create_session(api_client, owner, destination_ids=[str(webhook_destination(owner).pk)])
    assert api_client.get(f"/api/v1/upload/{session['id']}/session").json()["status"] == "pending"

    upload(api_client, session["id"], image_bytes())

    assert api_client.get(f"/api/v1/upload/{session['id']}/session").json()["status"] == "uploading"


def test_original_bytes_are_staged_unchanged(api_client, owner):
    session = create_session(api_client, owner)
    data = noisy_jpeg((200, 100))

    image_id = upload(api_client, session["id"], data).json()["id"]

    image = Image.objects.get(pk=image_id)
    with default_storage.open(image.staged_name) as staged:
        assert staged.read() == data
    assert image.sha256 == hashlib.sha256(data).hexdigest()


# --- file names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/photo.jpg", "photo.jpg"),
        ("C:\\Users\\me\\Pictures\\photo.jpg", "photo.jpg"),
        ("ph\x07o\x1bto\u202e.jpg", "photo.jpg"),
        ("nul\x00.jpg", "nul.jpg"),
        ("ünïcødé 📷.jpg", "ünïcødé 📷.jpg"),
        ("..", "image.jpg"),
        ("photos/", "image.jpg"),
        ("\x01\x02", "image.jpg"),
    ],
)
def test_file_name_is_sanitised(api_client, owner, sent, stored):
    session = create_session(api_client, owner)

    response = upload_raw_part(api_client, session["id"], image_bytes(), f'name="file"; filename="{sent}"')

    assert response.status_code == 201, response.content
    assert response.json()["filename"] == stored
    assert Image.objects.get(pk=response.json()["id"]).filename == stored


def test_file_name_that_sanitises_to_nothing_becomes_image_dot_the_real_extension(api_client, owner):
    session = create_session(api_client, owner)

    response = upload_raw_part(api_client, session["id"], image_bytes("PNG"), 'name="file"; filename="/"')

    assert response.status_code == 201, response.content
    assert response.json()["filename"] == "image.png"


def test_part_without_a_file_name_is_not_a_file_and_is_refused_with_400(api_client, owner):
    # Multipart semantics: a part with an empty filename is a text field, so its bytes are not the image.
    session = create_session(api_client, owner)

    response = upload_raw_part(api_client, session["id"], image_bytes("PNG"), 'name="file"; filename=""')

    assert_error(response, 400, "VALIDATION_ERROR")
    assert "file" in response.json()["fields"]


def test_long_file_name_is_cut_to_255_bytes_keeping_the_extension(api_client, owner):
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], image_bytes(), name="é" * 200 + ".jpeg")

    filename = response.json()["filename"]
    assert len(filename.encode()) <= 255
    assert filename.endswith(".jpeg")
    assert filename.startswith("é")


@pytest.mark.parametrize(
    ("disposition", "stored"),
    [
        ('filename="' + "a" * 4096 + '.jpg"', "a" * 251 + ".jpg"),
        ('filename="' + "é" * 2048 + '.jpg"', "é" * 125 + ".jpg"),
        ('filename="' + "📷" * 1024 + '.jpeg"', "📷" * 62 + ".jpeg"),
        ("filename*=UTF-8''" + quote("é" * 2048 + ".jpg"), "é" * 125 + ".jpg"),  # RFC 2231, 12 KB of header
    ],
    ids=["4 KB ascii", "4 KB two-byte", "4 KB four-byte", "4 KB percent-encoded"],
)
def test_file_name_of_kilobytes_is_trimmed_to_255_bytes_not_refused(api_client, owner, disposition, stored):
    session = create_session(api_client, owner)

    response = upload_raw_part(api_client, session["id"], image_bytes(), f'name="file"; {disposition}')

    assert response.status_code == 201, response.content
    assert response.json()["filename"] == stored
    assert len(stored.encode()) <= 255
    assert Image.objects.get(pk=response.json()["id"]).filename == stored


def test_form_posted_without_multipart_encoding_is_400_naming_the_file_part(api_client, owner):
    # A browser form without enctype="multipart/form-data" sends the file's name only, never its bytes.
    session = create_session(api_client, owner)

    response = api_client.post(
        f"/api/v1/upload/{session['id']}/images",
        "file=photo.jpg&source=camera",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400, response.content
    assert response.json() == {
        "message": "Send the image as the multipart part `file`.",
        "code": "VALIDATION_ERROR",
        "statusCode": 400,
        "error": "Bad Request",
        "fields": {"file": ["required"]},
    }
    assert images_count(api_client, session["id"]) == 0


# --- source ----------------------------------------------------------------------------------------


def test_source_defaults_to_camera(api_client, owner):
    session = create_session(api_client, owner)

    image_id = upload(api_client, session["id"], image_bytes()).json()["id"]

    assert Image.objects.get(pk=image_id).source == "camera"


@pytest.mark.parametrize("source", ["gallery", "camera", "scanner_2", "a" * 64])
def test_valid_source_is_stored(api_client, owner, source):
    session = create_session(api_client, owner)

    image_id = upload(api_client, session["id"], image_bytes(), source=source).json()["id"]

    assert Image.objects.get(pk=image_id).source == source


@pytest.mark.parametrize("source", ["Gallery", "my source", "a" * 65, "gällery", "camera\n", "../x", "cam\x00"])
def test_invalid_source_is_400_and_consumes_no_slot(api_client, owner, source):
    session = create_session(api_client, owner)

    response = upload(api_client, session["id"], image_bytes(), source=source)

    assert_error(response, 400, "VALIDATION_ERROR")
    assert "source" in response.json()["fields"]
    assert images_count(api_client, session["id"]) == 0
