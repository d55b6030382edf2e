"""Pull delivery through the API (docs/api.md "Pull delivery"), with the Django test client: the client variant's
queue, download and acknowledgement, the held variant's leases, what other projects and sessions without long
polling get, and the pull state in the delivery status. Against a live server: tests/live/test_pull_delivery.py."""

import hashlib
from datetime import timedelta

import pytest
from apertur_sdk.crypto import encrypt_image
from asgiref.sync import async_to_sync
from django.core.files.storage import default_storage
from django.utils import timezone

from apertur.streaming import CHUNK_BYTES
from sessions_app.models import Image, UploadSession
from sessions_app.polling import image_lease_next
from sessions_app.polling_api import staged_image_response
from sessions_app.services import images_purge_staged
from tests.factories import image_bytes, noisy_jpeg
from tests.sessions_app.helpers import create_session, upload, webhook_destination
from tests.sessions_app.test_encrypted_upload import server_key, upload_envelope

pytestmark = pytest.mark.django_db


def uploaded(api_client, session_id: str, data: bytes, name: str = "photo.jpg") -> str:
    response = upload(api_client, session_id, data, name=name)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def queue(api_client, persona, session_id: str) -> list[dict]:
    response = api_client.get(f"/api/v1/upload-sessions/{session_id}/poll", **persona.auth)
    assert response.status_code == 200, response.content
    return response.json()["images"]


def held_poll(api_client, persona, session_id: str, timeout="1"):
    return api_client.get(f"/api/v1/sessions/{session_id}/poll", {"timeout": timeout}, **persona.auth)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    return response.json()


# --- client variant ---------------------------------------------------------------------------------


def test_the_queue_lists_unacknowledged_images_oldest_first_with_their_facts(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    first = uploaded(api_client, session_id, image_bytes("JPEG"), name="first.jpg")
    second = uploaded(api_client, session_id, image_bytes("PNG"), name="second.png")

    images = queue(api_client, owner, session_id)

    assert [image["id"] for image in images] == [first, second]
    stored = Image.objects.get(pk=second)
    assert images[1] == {
        "id": second,
        "filename": "second.png",
        "size_bytes": stored.size_bytes,
        "mime_type": "image/png",
        "source": "camera",
        "created_at": stored.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "image_index": 1,
    }


def test_download_streams_the_uploaded_bytes_with_their_type_length_and_name(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    original = image_bytes("PNG")
    image_id = uploaded(api_client, session_id, original, name='my "holiday" été.png')

    response = api_client.get(f"/api/v1/upload-sessions/{session_id}/images/{image_id}", **owner.auth)

    assert response.status_code == 200
    assert response.streaming
    assert body_of(response) == original
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(original))
    assert response["Content-Disposition"].startswith("attachment; filename*=utf-8''my%20%22holiday%22%20%C3%A9t%C3%A9")
    assert response["X-RateLimit-Limit"] == "300"  # a read: the session_read scope


def test_under_asgi_a_download_is_read_one_chunk_at_a_time(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    original = noisy_jpeg((1200, 900))
    image = Image.objects.get(pk=uploaded(api_client, session_id, original))
    # The response as the view returns it (the test client would wrap its content to close it).
    response = staged_image_response(image)

    async def read_as_the_asgi_handler_does() -> tuple[int, list[bytes]]:
        chunks = aiter(response)  # what Django's ASGIHandler iterates
        first = await anext(chunks)
        read_so_far = response.file_to_stream.tell()
        return read_so_far, [first] + [chunk async for chunk in chunks]

    read_when_the_first_chunk_is_sent, chunks = async_to_sync(read_as_the_asgi_handler_does)()
    response.close()

    assert len(original) > 3 * CHUNK_BYTES
    assert read_when_the_first_chunk_is_sent <= CHUNK_BYTES  # Django's own path has read the whole file by then
    assert b"".join(chunks) == original


def test_an_encrypted_upload_downloads_as_the_original_image(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    original = noisy_jpeg((320, 240))
    envelope = encrypt_image(original, server_key(api_client, owner))
    image_id = upload_envelope(api_client, session_id, envelope).json()["id"]

    response = api_client.get(f"/api/v1/upload-sessions/{session_id}/images/{image_id}", **owner.auth)

    assert hashlib.sha256(body_of(response)).hexdigest() == hashlib.sha256(original).hexdigest()
    assert response["Content-Type"] == "image/jpeg"


def test_an_acknowledged_image_leaves_the_queue_and_a_second_ack_is_409(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    taken, kept = (uploaded(api_client, session_id, image_bytes()) for _ in range(2))
    ack_path = f"/api/v1/upload-sessions/{session_id}/images/{taken}/ack"

    response = api_client.post(ack_path, **owner.auth)

    assert (response.status_code, response.json()) == (200, {"status": "acknowledged"})
    assert [image["id"] for image in queue(api_client, owner, session_id)] == [kept]
    assert Image.objects.get(pk=taken).acknowledged_at is not None
    assert_error(api_client.post(ack_path, **owner.auth), 409, "ALREADY_ACKNOWLEDGED")
    assert_error(api_client.post(f"/api/v1/images/{taken}/ack", **owner.auth), 409, "ALREADY_ACKNOWLEDGED")


def test_an_acknowledgement_changes_the_session_for_pollers_of_its_status(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())
    before = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **owner.auth).json()

    api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth)

    after = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **owner.auth).json()
    assert after["lastChanged"] > before["lastChanged"]


def test_an_image_of_another_session_is_not_found_through_this_sessions_paths(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    other_session_id = create_session(api_client, owner)["id"]
    other_image = uploaded(api_client, other_session_id, image_bytes())

    download = api_client.get(f"/api/v1/upload-sessions/{session_id}/images/{other_image}", **owner.auth)
    ack = api_client.post(f"/api/v1/upload-sessions/{session_id}/images/{other_image}/ack", **owner.auth)

    assert_error(download, 404, "NOT_FOUND")
    assert_error(ack, 404, "NOT_FOUND")
    assert Image.objects.get(pk=other_image).acknowledged_at is None


@pytest.mark.parametrize("image_id", ["img_unknown", "x", "%00"])
def test_unknown_image_ids_are_404(api_client, owner, image_id):
    session_id = create_session(api_client, owner)["id"]

    assert_error(api_client.get(f"/api/v1/images/{image_id}/download", **owner.auth), 404, "NOT_FOUND")
    assert_error(api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth), 404, "NOT_FOUND")
    path = f"/api/v1/upload-sessions/{session_id}/images/{image_id}"
    assert_error(api_client.get(path, **owner.auth), 404, "NOT_FOUND")


def test_another_projects_image_and_session_are_404_and_stay_unacknowledged(api_client, owner, outsider):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())

    for response in (
        api_client.get(f"/api/v1/images/{image_id}/download", **outsider.auth),
        api_client.post(f"/api/v1/images/{image_id}/ack", **outsider.auth),
        api_client.get(f"/api/v1/upload-sessions/{session_id}/poll", **outsider.auth),
        api_client.get(f"/api/v1/upload-sessions/{session_id}/images/{image_id}", **outsider.auth),
        api_client.post(f"/api/v1/upload-sessions/{session_id}/images/{image_id}/ack", **outsider.auth),
        held_poll(api_client, outsider, session_id),
    ):
        body = assert_error(response, 404, "NOT_FOUND")
        assert image_id not in body["message"]
    image = Image.objects.get(pk=image_id)
    assert (image.acknowledged_at, image.poll_leased_until) == (None, None)


def test_a_session_without_long_polling_cannot_be_pulled_from(api_client, owner):
    destination = webhook_destination(owner)
    session_id = create_session(api_client, owner, long_polling=False, destination_ids=[str(destination.pk)])["id"]
    image_id = uploaded(api_client, session_id, image_bytes())

    for response in (
        api_client.get(f"/api/v1/upload-sessions/{session_id}/poll", **owner.auth),
        api_client.get(f"/api/v1/upload-sessions/{session_id}/images/{image_id}", **owner.auth),
        api_client.post(f"/api/v1/upload-sessions/{session_id}/images/{image_id}/ack", **owner.auth),
        held_poll(api_client, owner, session_id),
        api_client.get(f"/api/v1/images/{image_id}/download", **owner.auth),
        api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth),
    ):
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert body["message"].startswith("This session does not use long polling")
    assert Image.objects.get(pk=image_id).acknowledged_at is None


def test_an_image_purged_unacknowledged_leaves_the_queue_and_its_download_is_410(api_client, owner, settings):
    settings.APERTUR_STAGING_RETENTION_DAYS = 7
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())
    api_client.post(f"/api/v1/upload/{session_id}/complete")
    Image.objects.filter(pk=image_id).update(created_at=timezone.now() - timedelta(days=8))
    assert images_purge_staged() == 1

    assert queue(api_client, owner, session_id) == []
    for response in (
        api_client.get(f"/api/v1/upload-sessions/{session_id}/images/{image_id}", **owner.auth),
        api_client.get(f"/api/v1/images/{image_id}/download", **owner.auth),
    ):
        assert "retention" in assert_error(response, 410, "IMAGE_NO_LONGER_STAGED")["message"]
    assert_error(held_poll(api_client, owner, session_id), 410, "POLLING_FINISHED")  # nothing left to take
    status = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **owner.auth).json()
    assert status["images"][0]["pull"]["status"] == "purged"
    assert api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth).status_code == 200  # still allowed


def test_an_image_whose_staged_file_vanished_is_410_not_500(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())
    default_storage.delete(Image.objects.get(pk=image_id).staged_name)

    assert_error(api_client.get(f"/api/v1/images/{image_id}/download", **owner.auth), 410, "IMAGE_NO_LONGER_STAGED")


# --- held variant -----------------------------------------------------------------------------------


def test_a_held_poll_answers_at_once_with_the_oldest_image_leased_and_its_absolute_download_url(
    api_client, owner, settings
):
    settings.APERTUR_PUBLIC_URL = "https://photos.example.test"
    session_id = create_session(api_client, owner)["id"]
    first = uploaded(api_client, session_id, image_bytes(), name="a.jpg")
    uploaded(api_client, session_id, image_bytes(), name="b.jpg")

    response = held_poll(api_client, owner, session_id, timeout="30")

    assert response.status_code == 200, response.content
    body = response.json()
    stored = Image.objects.get(pk=first)
    assert body == {
        "image_id": first,
        "image_index": 0,
        "filename": "a.jpg",
        "mime_type": "image/jpeg",
        "size_bytes": stored.size_bytes,
        "created_at": stored.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "download_url": f"https://photos.example.test/api/v1/images/{first}/download",
        "leased_until": stored.poll_leased_until.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    lease = (stored.poll_leased_until - timezone.now()).total_seconds()
    assert 290 < lease <= 300
    download = api_client.get(body["download_url"].removeprefix("https://photos.example.test"), **owner.auth)
    assert body_of(download) == image_bytes()
    assert download["Content-Type"] == "image/jpeg"


def test_held_polls_lease_each_image_once_then_wait_and_answer_204(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    images = [uploaded(api_client, session_id, image_bytes()) for _ in range(2)]

    leased = [held_poll(api_client, owner, session_id).json()["image_id"] for _ in range(2)]
    nothing = held_poll(api_client, owner, session_id, timeout="1")

    assert leased == images
    assert (nothing.status_code, nothing.content) == (204, b"")
    assert nothing["X-RateLimit-Limit"] == "300"


def test_an_expired_lease_makes_the_image_available_again(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())
    assert held_poll(api_client, owner, session_id).json()["image_id"] == image_id
    Image.objects.filter(pk=image_id).update(poll_leased_until=timezone.now() - timedelta(seconds=1))

    again = held_poll(api_client, owner, session_id)

    assert again.status_code == 200 and again.json()["image_id"] == image_id


def test_leasing_skips_leased_and_acknowledged_images(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    acknowledged, leased, free = (uploaded(api_client, session_id, image_bytes()) for _ in range(3))
    api_client.post(f"/api/v1/images/{acknowledged}/ack", **owner.auth)
    session = Image.objects.get(pk=leased).session
    assert image_lease_next(session=session).pk == leased

    assert image_lease_next(session=session).pk == free
    assert image_lease_next(session=session) is None


def test_an_acknowledgement_ends_the_lease(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())
    held_poll(api_client, owner, session_id)

    api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth)

    image = Image.objects.get(pk=image_id)
    assert image.acknowledged_at is not None and image.poll_leased_until is None


def test_a_closed_session_answers_410_once_every_image_is_acknowledged(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())
    assert api_client.post(f"/api/v1/upload/{session_id}/complete").status_code == 200

    assert held_poll(api_client, owner, session_id).json()["image_id"] == image_id
    assert held_poll(api_client, owner, session_id, timeout="1").status_code == 204  # leased, not yet acknowledged
    api_client.post(f"/api/v1/images/{image_id}/ack", **owner.auth)

    body = assert_error(held_poll(api_client, owner, session_id, timeout="30"), 410, "POLLING_FINISHED")
    assert body["statusCode"] == 410 and body["error"] == "Gone"
    assert queue(api_client, owner, session_id) == []  # the client variant has no "finished": an empty queue


def test_an_expired_session_with_nothing_left_is_finished_too(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    UploadSession.objects.filter(pk=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_error(held_poll(api_client, owner, session_id, timeout="30"), 410, "POLLING_FINISHED")


@pytest.mark.parametrize("timeout", ["0", "31", "x", "1.5", "-1"])
def test_a_bad_timeout_is_a_400_naming_it(api_client, owner, timeout):
    session_id = create_session(api_client, owner)["id"]
    uploaded(api_client, session_id, image_bytes())

    body = assert_error(held_poll(api_client, owner, session_id, timeout=timeout), 400, "VALIDATION_ERROR")

    assert list(body["fields"]) == ["timeout"]
    assert Image.objects.get(session_id=session_id).poll_leased_until is None


def test_an_empty_timeout_means_the_default(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    image_id = uploaded(api_client, session_id, image_bytes())

    assert held_poll(api_client, owner, session_id, timeout="").json()["image_id"] == image_id


# --- pull state in the delivery status ----------------------------------------------------------------


def test_the_delivery_status_shows_each_images_pull_state(api_client, owner):
    session_id = create_session(api_client, owner)["id"]
    acknowledged, leased, waiting = (uploaded(api_client, session_id, image_bytes()) for _ in range(3))
    api_client.post(f"/api/v1/images/{acknowledged}/ack", **owner.auth)
    assert held_poll(api_client, owner, session_id).json()["image_id"] == leased

    status = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **owner.auth).json()

    pulls = {image["image_id"]: image["pull"] for image in status["images"]}
    acknowledged_at = Image.objects.get(pk=acknowledged).acknowledged_at
    leased_until = Image.objects.get(pk=leased).poll_leased_until
    iso = lambda moment: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
    assert pulls == {
        acknowledged: {"status": "acknowledged", "acknowledged_at": iso(acknowledged_at), "leased_until": None},
        leased: {"status": "leased", "acknowledged_at": None, "leased_until": iso(leased_until)},
        waiting: {"status": "waiting", "acknowledged_at": None, "leased_until": None},
    }
    assert {image["record_id"] for image in status["files"]} == {acknowledged, leased, waiting}
    assert all("pull" not in row for row in status["files"])  # the official clients' shape is unchanged


def test_a_session_without_long_polling_shows_no_pull_state(api_client, owner):
    destination = webhook_destination(owner)
    session_id = create_session(api_client, owner, long_polling=False, destination_ids=[str(destination.pk)])["id"]
    uploaded(api_client, session_id, image_bytes())

    status = api_client.get(f"/api/v1/upload-sessions/{session_id}/delivery-status", **owner.auth).json()

    assert "pull" not in status["images"][0]
