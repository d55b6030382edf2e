"""Pull delivery against a live server (docs/api.md "Pull delivery"): the official Python client's `polling`
resource as a black box, and the held poll over real HTTP with requests waiting at once."""

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from apertur_sdk import Apertur
from apertur_sdk.errors import AperturError

from sessions_app.models import Image
from tests.conftest import ServerProcess
from tests.factories import image_bytes, make_persona


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def distinct_images(count: int) -> list[bytes]:
    return [image_bytes(color=(10 * number, 90, 200 - 10 * number)) for number in range(count)]


class Api:
    """Plain HTTP calls to the live server with one key."""

    def __init__(self, server_url: str, plain_key: str) -> None:
        self.url = server_url
        self.headers = {"Authorization": f"Bearer {plain_key}"}

    def create_session(self, **body) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/upload-sessions", json={"long_polling": True, **body}, headers=self.headers
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def upload(self, session_id: str, data: bytes, name: str = "photo.jpg") -> str:
        response = httpx.post(
            f"{self.url}/api/v1/upload/{session_id}/images", files={"file": (name, data, "image/jpeg")}, timeout=30
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def held_poll(self, session_id: str, timeout="1") -> httpx.Response:
        return httpx.get(
            f"{self.url}/api/v1/sessions/{session_id}/poll",
            params={"timeout": timeout},
            headers=self.headers,
            timeout=60,
        )

    def ack(self, image_id: str) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/images/{image_id}/ack", headers=self.headers)

    def complete(self, session_id: str) -> None:
        assert httpx.post(f"{self.url}/api/v1/upload/{session_id}/complete").status_code == 200


class Waiter:
    """A held poll in a thread, and when its answer came."""

    def __init__(self, api: Api, session_id: str, timeout: str = "10") -> None:
        self.answer: httpx.Response | None = None
        self.answered_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(api, session_id, timeout))
        self._thread.start()

    def _run(self, api: Api, session_id: str, timeout: str) -> None:
        self.answer = api.held_poll(session_id, timeout=timeout)
        self.answered_at = time.monotonic()

    def parked(self) -> "Waiter":
        # Nothing outside the server tells when a request is parked: give it the time to get there, then check
        # that it is still waiting (an answer now would be a bug, not a race).
        time.sleep(0.3)
        assert self.answer is None, self.answer
        return self

    def result(self) -> httpx.Response:
        self._thread.join(timeout=30)
        assert self.answer is not None
        return self.answer


@pytest.fixture
def api(live_server_process) -> Api:
    return Api(live_server_process.url, make_persona("puller").plain_key)


# --- the official client (client variant) ------------------------------------------------------------


def test_official_client_lists_downloads_and_acknowledges_and_a_second_ack_is_its_409_error(live_server_process):
    persona = make_persona("sdk-puller")
    originals = distinct_images(2)
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session = sdk.sessions.create(long_polling=True)
        for number, data in enumerate(originals):
            sdk.upload.image(session["id"], data, filename=f"shot-{number}.jpg")

        listed = sdk.polling.list(session["id"])["images"]
        assert [image["filename"] for image in listed] == ["shot-0.jpg", "shot-1.jpg"]
        assert [image["image_index"] for image in listed] == [0, 1]
        for image, original in zip(listed, originals, strict=True):
            assert sha256(sdk.polling.download(session["id"], image["id"])) == sha256(original)
        assert sdk.polling.ack(session["id"], listed[0]["id"]) == {"status": "acknowledged"}
        assert [image["id"] for image in sdk.polling.list(session["id"])["images"]] == [listed[1]["id"]]

        with pytest.raises(AperturError) as refused:
            sdk.polling.ack(session["id"], listed[0]["id"])
        assert (refused.value.status_code, refused.value.code) == (409, "ALREADY_ACKNOWLEDGED")


def test_official_client_poll_and_process_handles_every_image_exactly_once_and_acknowledges_it(live_server_process):
    persona = make_persona("sdk-processor")
    originals = distinct_images(5)
    handled: list[tuple[str, str]] = []
    first_batch_handled = threading.Event()

    def handler(image: dict, data: bytes) -> None:
        handled.append((image["id"], sha256(data)))
        if len(handled) == 3:
            first_batch_handled.set()

    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session_id = sdk.sessions.create(long_polling=True)["id"]
        uploaded = [sdk.upload.image(session_id, data, filename="a.jpg")["id"] for data in originals[:3]]

        def upload_more_while_it_runs() -> None:
            assert first_batch_handled.wait(timeout=10)
            uploaded.extend(sdk.upload.image(session_id, data, filename="b.jpg")["id"] for data in originals[3:])

        uploader = threading.Thread(target=upload_more_while_it_runs)
        uploader.start()
        sdk.polling.poll_and_process(session_id, handler, interval=0.2, timeout=4)
        uploader.join()

        assert sorted(handled) == sorted(zip(uploaded, map(sha256, originals), strict=True))
        assert sdk.polling.list(session_id)["images"] == []
    assert Image.objects.filter(session_id=session_id, acknowledged_at__isnull=False).count() == 5


# --- the held variant ---------------------------------------------------------------------------------


def test_a_held_poll_with_nothing_to_take_answers_204_after_its_timeout(api):
    session_id = api.create_session()

    started = time.monotonic()
    response = api.held_poll(session_id, timeout="1")

    assert (response.status_code, response.content) == (204, b"")
    assert 1 <= time.monotonic() - started < 3


def test_a_waiting_held_poll_answers_within_a_second_of_an_upload_and_the_image_downloads(api):
    session_id = api.create_session()
    original = image_bytes(color=(1, 2, 3))
    waiter = Waiter(api, session_id, timeout="20").parked()

    image_id = api.upload(session_id, original, name="late.jpg")
    uploaded_at = time.monotonic()  # the upload committed before its answer; the poll may even answer first

    response = waiter.result()
    assert response.status_code == 200, response.text
    assert waiter.answered_at - uploaded_at < 1
    body = response.json()
    assert (body["image_id"], body["filename"], body["image_index"]) == (image_id, "late.jpg", 0)
    assert body["download_url"] == f"{api.url}/api/v1/images/{image_id}/download"
    download = httpx.get(body["download_url"], headers=api.headers)
    assert download.status_code == 200
    assert sha256(download.content) == sha256(original)
    assert download.headers["content-type"] == "image/jpeg"
    assert download.headers["content-length"] == str(len(original))
    assert api.ack(image_id).json() == {"status": "acknowledged"}


def test_an_expired_lease_is_offered_again_to_a_poll_that_is_waiting(transactional_db, tmp_path):
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log", APERTUR_POLL_LEASE_SECONDS="1")
    try:
        api = Api(server.url, make_persona("forgetful").plain_key)
        session_id = api.create_session()
        image_id = api.upload(session_id, image_bytes())
        assert api.held_poll(session_id).json()["image_id"] == image_id  # leased for 1 s, never acknowledged
        started = time.monotonic()

        again = api.held_poll(session_id, timeout="10")

        assert again.status_code == 200 and again.json()["image_id"] == image_id
        assert time.monotonic() - started < 2.5  # woken when the lease ran out, not at the poll's timeout
    finally:
        server.stop()


def test_two_held_polls_at_once_never_get_the_same_image(api):
    session_id = api.create_session()
    uploaded = {api.upload(session_id, image_bytes()) for _ in range(2)}
    start = threading.Barrier(2)

    def poll(_: int) -> httpx.Response:
        start.wait()
        return api.held_poll(session_id, timeout="5")

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(poll, range(2)))

    assert [answer.status_code for answer in answers] == [200, 200]
    assert {answer.json()["image_id"] for answer in answers} == uploaded


def test_two_waiting_held_polls_get_one_image_each_as_they_arrive(api):
    session_id = api.create_session()
    waiters = [Waiter(api, session_id, timeout="20") for _ in range(2)]
    waiters[1].parked()
    assert waiters[0].answer is None

    uploaded = {api.upload(session_id, image_bytes()) for _ in range(2)}

    answers = [waiter.result() for waiter in waiters]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert {answer.json()["image_id"] for answer in answers} == uploaded


def test_a_waiting_held_poll_ends_with_410_when_the_last_image_of_a_closed_session_is_acknowledged(api):
    session_id = api.create_session()
    image_id = api.upload(session_id, image_bytes())
    api.complete(session_id)
    assert api.held_poll(session_id).json()["image_id"] == image_id
    waiter = Waiter(api, session_id, timeout="20").parked()  # the image is leased: nothing to take, not finished

    assert api.ack(image_id).status_code == 200
    acknowledged_at = time.monotonic()

    response = waiter.result()
    assert response.status_code == 410 and response.json()["code"] == "POLLING_FINISHED"
    assert waiter.answered_at - acknowledged_at < 1
    assert api.held_poll(session_id, timeout="30").status_code == 410  # at once from now on


def test_two_acknowledgements_at_once_succeed_exactly_once(api):
    session_id = api.create_session()
    image_id = api.upload(session_id, image_bytes())
    start = threading.Barrier(8)

    def ack(_: int) -> int:
        start.wait()
        return api.ack(image_id).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(ack, range(8)))

    assert statuses == [200] + [409] * 7


def test_another_projects_key_gets_404_from_the_held_variant(api):
    session_id = api.create_session()
    image_id = api.upload(session_id, image_bytes())
    stranger = Api(api.url, make_persona("stranger").plain_key)

    for response in (
        stranger.held_poll(session_id, timeout="5"),
        httpx.get(f"{api.url}/api/v1/images/{image_id}/download", headers=stranger.headers),
        stranger.ack(image_id),
    ):
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert api.held_poll(session_id).json()["image_id"] == image_id  # untouched: not leased by the stranger


def test_a_bad_timeout_is_400_naming_it(api):
    session_id = api.create_session()

    for timeout in ("0", "31", "x"):
        response = api.held_poll(session_id, timeout=timeout)

        assert response.status_code == 400, timeout
        assert response.json()["code"] == "VALIDATION_ERROR" and list(response.json()["fields"]) == ["timeout"]


def test_the_delivery_status_shows_an_image_leased_then_acknowledged(api):
    session_id = api.create_session()
    image_id = api.upload(session_id, image_bytes())
    assert api.held_poll(session_id).json()["image_id"] == image_id

    def pull_status() -> str:
        url = f"{api.url}/api/v1/upload-sessions/{session_id}/delivery-status"
        return httpx.get(url, headers=api.headers).json()["images"][0]["pull"]["status"]

    assert pull_status() == "leased"
    api.ack(image_id)
    assert pull_status() == "acknowledged"
