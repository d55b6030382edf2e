"""max_images under real concurrency (docs/api.md "Uploading images": "checked atomically: concurrent uploads can
never exceed it").

The uploads go to a real server process (uvicorn, one thread per request) from many client threads at once,
so the count is decided by the database's locks, not by the test client's serial requests.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from sessions_app.models import Image, UploadSession
from tests.factories import image_bytes, make_persona

UPLOADERS = 50


def upload_all_at_once(server_url: str, session_id: str, count: int) -> list[httpx.Response]:
    data = image_bytes()
    start = threading.Barrier(count)

    def one_upload(number: int) -> httpx.Response:
        start.wait()
        return httpx.post(
            f"{server_url}/api/v1/upload/{session_id}/images",
            files={"file": (f"photo-{number}.jpg", data, "image/jpeg")},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one_upload, range(count)))


def create_session(server_url: str, plain_key: str, **body) -> str:
    response = httpx.post(
        f"{server_url}/api/v1/upload-sessions",
        json={"long_polling": True, **body},
        headers={"Authorization": f"Bearer {plain_key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_fifty_concurrent_uploads_into_a_ten_image_session_accept_exactly_ten(live_server_process):
    persona = make_persona("owner")
    session_id = create_session(live_server_process.url, persona.plain_key, max_images=10)

    responses = upload_all_at_once(live_server_process.url, session_id, UPLOADERS)

    statuses = [response.status_code for response in responses]
    assert statuses.count(201) == 10, statuses
    refused = [response for response in responses if response.status_code != 201]
    # A session closed by reaching max_images still answers SESSION_FULL, never SESSION_CLOSED.
    refusals = [(response.status_code, response.json()["code"]) for response in refused]
    assert refusals == [(422, "SESSION_FULL")] * (UPLOADERS - 10)
    accepted_indexes = sorted(response.json()["image_index"] for response in responses if response.status_code == 201)
    assert accepted_indexes == list(range(10))
    assert sorted(Image.objects.filter(session_id=session_id).values_list("index", flat=True)) == list(range(10))
    assert UploadSession.objects.get(pk=session_id).images_count == 10


def test_concurrent_uploads_with_room_for_all_get_distinct_gapless_indexes(live_server_process):
    persona = make_persona("owner")
    session_id = create_session(live_server_process.url, persona.plain_key, max_images=100)

    responses = upload_all_at_once(live_server_process.url, session_id, 30)

    assert [response.status_code for response in responses] == [201] * 30, [r.text for r in responses]
    assert sorted(response.json()["image_index"] for response in responses) == list(range(30))
    session = UploadSession.objects.get(pk=session_id)
    assert (session.images_count, session.closed_at, session.status) == (30, None, "uploading")
