"""The phone upload page in a real phone-sized browser (docs/upload-page.md): photos sent three at a time and
followed live to "Sent", downscaling honouring EXIF orientation, plain-words errors, Retry, a dropped connection,
the password gate, Done, languages, colours, and the messages an embedding page receives."""

import hashlib
import io
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.utils import timezone
from PIL import Image as PillowImage

from destinations.services import destination_create
from sessions_app.models import Image, UploadSession
from tests.factories import image_bytes, make_persona, noisy_jpeg, wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def persona(transactional_db):
    return make_persona("owner")


@pytest.fixture
def site(live_server_process):
    return live_server_process


def create_session(site, persona, **body) -> dict:
    response = httpx.post(
        f"{site.url}/api/v1/upload-sessions",
        json=body,
        headers={"Authorization": f"Bearer {persona.plain_key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def webhook_session(site, persona, receiver, **body) -> dict:
    destination = destination_create(
        project=persona.project,
        type="webhook",
        name="receiver",
        config={"url": f"{receiver.url}/hook", "secret": "s3cret-value"},
    )
    return create_session(site, persona, destination_ids=[str(destination.pk)], **body)


def photo(name: str, data: bytes, mime_type: str = "image/jpeg") -> dict:
    return {"name": name, "mimeType": mime_type, "buffer": data}


def jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    """A JPEG whose stored pixels are `size` and whose EXIF says how to turn them for display."""
    buffer = io.BytesIO()
    exif = PillowImage.Exif()
    exif[0x0112] = orientation
    PillowImage.new("RGB", size, (40, 120, 200)).save(buffer, format="JPEG", exif=exif, quality=90)
    return buffer.getvalue()


# Cumulative layout shift not caused by the user's own input (https://web.dev/articles/cls).
LAYOUT_SHIFT_OBSERVER = """() => {
  window.layoutShift = 0;
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.layoutShift += entry.value;
  }).observe({type: "layout-shift", buffered: true});
}"""


def rows(page):
    return page.locator("#files li")


def states(page) -> list[str]:
    return rows(page).evaluate_all("items => items.map(item => item.dataset.state)")


def test_a_phone_user_passes_the_gate_and_sends_three_photos_through_the_file_chooser(
    site, persona, phone, webhook_receiver
):
    session = webhook_session(site, persona, webhook_receiver, max_images=10, password="open-sesame")
    phone.goto(session["upload_url"])
    assert phone.locator("h1").inner_text() == "This upload is protected"
    phone.get_by_label("Password").fill("wrong-one")
    phone.get_by_role("button", name="Continue").click()
    phone.get_by_text("That password is not right. Check it and try again.").wait_for()
    phone.get_by_label("Password").fill("open-sesame")
    phone.get_by_role("button", name="Continue").click()
    phone.get_by_text("Take photo").wait_for()
    assert phone.locator("h1").inner_text() == "Send your photos"
    assert phone.locator("#plain-form").count() == 0  # the script's page, not the plain form
    assert phone.locator("#done-button").is_disabled()  # nothing to complete yet
    phone.evaluate(LAYOUT_SHIFT_OBSERVER)
    photos = [noisy_jpeg((800, 600)) for _ in range(3)]

    with phone.expect_file_chooser() as chooser:
        phone.get_by_text("Choose from gallery").tap()
    assert chooser.value.is_multiple()
    chooser.value.set_files([photo(f"photo-{index}.jpg", data) for index, data in enumerate(photos)])

    phone.locator('#files li[data-state="sent"]').nth(2).wait_for()
    assert states(phone) == ["sent", "sent", "sent"]
    assert rows(phone).locator(".file-state").all_inner_texts() == ["Sent", "Sent", "Sent"]
    assert phone.locator("#counter").inner_text() == "3 of 10 photos received"
    received = webhook_receiver.wait_for_requests(3)
    assert sorted(hashlib.sha256(data).hexdigest() for data in photos) == sorted(
        Image.objects.filter(session_id=session["id"]).values_list("sha256", flat=True)
    )
    assert all(any(data in request.body for request in received) for data in photos), "the receiver got the bytes"
    thumbnails = rows(phone).locator("img.thumb").evaluate_all("images => images.map(image => image.naturalWidth)")
    assert all(width > 0 for width in thumbnails), "each row shows the photo it sent"

    phone.locator("#done-button").tap()
    phone.get_by_text("Your 3 photos were received. You can close this page.").wait_for()
    assert phone.locator("h1").inner_text() == "Thank you!"
    assert phone.locator("#pickers").is_hidden()
    assert UploadSession.objects.get(pk=session["id"]).close_reason == "completed"
    assert phone.evaluate("window.layoutShift") < 0.1
    assert phone.problems == []


def test_touch_targets_are_large_and_labelled(site, persona, phone):
    session = create_session(site, persona, long_polling=True)
    phone.goto(session["upload_url"])
    for name in ("Take photo", "Choose from gallery", "Done"):
        target = phone.get_by_text(name, exact=True).locator(
            "xpath=ancestor-or-self::*[self::label or self::button][1]"
        )
        box = target.bounding_box()
        assert box["height"] >= 44 and box["width"] >= 44, (name, box)
    # Screen readers: each file input is named by its visible label.
    assert phone.get_by_label("Take photo").get_attribute("capture") == "environment"
    assert phone.get_by_label("Choose from gallery").get_attribute("multiple") is not None


def test_a_photo_larger_than_the_sessions_dimension_is_downscaled_upright_before_upload(site, persona, phone):
    session = create_session(site, persona, long_polling=True, max_image_dimension=400)
    # Stored landscape, shown portrait (EXIF orientation 6: turn 90° clockwise): the phone's usual camera photo.
    original = jpeg_with_orientation((1600, 1200), orientation=6)
    requests = []
    phone.on("request", lambda request: "/images" in request.url and requests.append(request))
    phone.goto(session["upload_url"])

    phone.locator("#camera-input").set_input_files([photo("IMG_0001.jpg", original)])

    phone.locator('#files li[data-state="received"]').wait_for()
    image = Image.objects.get(session_id=session["id"])
    assert (image.width, image.height) == (300, 400), "scaled to fit 400 px, upright"
    assert image.mime_type == "image/jpeg" and image.source == "camera"
    assert len(requests) == 1
    assert image.size_bytes < len(original)


def test_refused_files_are_explained_in_plain_words_per_file(site, persona, phone):
    session = create_session(site, persona, long_polling=True, max_images=5)
    httpx.patch(
        f"{site.url}/api/v1/upload-sessions/{session['id']}",
        json={"max_image_size_mb": 1},
        headers={"Authorization": f"Bearer {persona.plain_key}"},
    ).raise_for_status()
    phone.goto(session["upload_url"])

    phone.locator("#gallery-input").set_input_files(
        [
            photo("notes.jpg", b"this is not a photo at all"),
            photo("huge.jpg", noisy_jpeg((1400, 1400)) * 3),
            photo("party.gif", image_bytes("GIF"), "image/gif"),
            photo("fine.jpg", image_bytes()),
        ]
    )

    phone.locator('#files li[data-state="received"]').wait_for()
    phone.locator('#files li[data-state="error"]').nth(2).wait_for()
    texts = dict(
        zip(
            rows(phone).locator(".file-name").all_inner_texts(),
            rows(phone).locator(".file-state").all_inner_texts(),
            strict=True,
        )
    )
    assert texts == {
        "notes.jpg": "This file is not a photo that can be read. Choose another one.",
        "huge.jpg": "This photo is too big: the limit is 1 MB.",
        "party.gif": "This type of file is not accepted here. Accepted: JPEG, PNG, WebP, HEIC.",
        "fine.jpg": "Received",
    }
    assert Image.objects.filter(session_id=session["id"]).count() == 1
    # A refused file can be removed from the list; it would be refused again.
    failed = rows(phone).filter(has_text="notes.jpg")
    assert failed.get_by_role("button").inner_text() == "Remove"
    failed.get_by_role("button").click()
    assert rows(phone).count() == 3


def test_retry_sends_again_only_the_file_that_failed(site, persona, phone):
    session = create_session(site, persona, long_polling=True, max_images=5)
    failures = {"left": 3}

    def busy_once(route):
        if failures["left"] and "second.jpg" in (route.request.post_data_buffer or b"").decode("latin-1"):
            failures["left"] -= 1
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({"message": "busy", "code": "SERVER_BUSY", "statusCode": 503, "error": "x"}),
            )
        else:
            route.continue_()

    phone.route("**/api/v1/upload/*/images", busy_once)
    phone.goto(session["upload_url"])
    phone.locator("#gallery-input").set_input_files(
        [photo("first.jpg", image_bytes()), photo("second.jpg", image_bytes(size=(70, 50)))]
    )

    failed = rows(phone).filter(has_text="second.jpg")
    failed.locator('xpath=self::*[@data-state="error"]').wait_for()
    assert failed.locator(".file-state").inner_text() == "The server is busy. Try again in a moment."
    assert Image.objects.filter(session_id=session["id"]).count() == 1

    failed.get_by_role("button", name="Retry").click()

    failed.locator('xpath=self::*[@data-state="received"]').wait_for()
    assert sorted(Image.objects.filter(session_id=session["id"]).values_list("filename", flat=True)) == [
        "first.jpg",
        "second.jpg",
    ]


def test_a_lost_answer_does_not_send_the_photo_twice(site, persona, phone):
    """The server took the photo but the connection dropped before its answer: the page learns from the event
    stream that it arrived and does not send it again."""
    session = create_session(site, persona, long_polling=True, max_images=5)
    dropped = []

    def drop_the_answer(route):
        if not dropped:
            response = route.fetch()  # the upload reaches the server
            dropped.append(response.status)
            route.abort("connectionreset")  # and its answer never reaches the phone
        else:
            route.continue_()

    phone.route("**/api/v1/upload/*/images", drop_the_answer)
    phone.goto(session["upload_url"])
    phone.locator("#gallery-input").set_input_files([photo("once.jpg", image_bytes())])

    phone.locator('#files li[data-state="received"]').wait_for()
    assert dropped == [201]
    assert Image.objects.filter(session_id=session["id"]).count() == 1


def test_an_upload_cut_by_a_dropped_connection_is_sent_again_once_back(site, persona, phone):
    session = create_session(site, persona, long_polling=True, max_images=5)
    cut = []

    def cut_once(route):
        if not cut:
            cut.append(True)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    phone.route("**/api/v1/upload/*/images", cut_once)
    phone.goto(session["upload_url"])
    phone.locator("#gallery-input").set_input_files([photo("tunnel.jpg", image_bytes())])

    phone.locator('#files li[data-state="received"]').wait_for()
    assert cut == [True]
    assert Image.objects.filter(session_id=session["id"]).count() == 1


def test_a_delivery_retried_after_the_receiver_was_down_turns_to_sent(site, persona, phone, webhook_receiver):
    answers = iter([503])
    webhook_receiver.respond = lambda request: next(answers, 200)
    session = webhook_session(site, persona, webhook_receiver, max_images=3)
    phone.goto(session["upload_url"])

    phone.locator("#gallery-input").set_input_files([photo("late.jpg", image_bytes())])

    phone.locator('#files li[data-state="delivery-retrying"]').wait_for()
    assert rows(phone).locator(".file-state").inner_text() == "Received; passing it on is taking longer than usual."
    phone.locator('#files li[data-state="sent"]').wait_for(timeout=30_000)  # the engine's next try (5 s)
    assert len(webhook_receiver.wait_for_requests(2)) == 2


def test_an_expired_link_shows_the_expired_page(site, persona, phone):
    session = create_session(site, persona, long_polling=True)
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = phone.goto(session["upload_url"])

    assert response.status == 410
    assert phone.locator("h1").inner_text() == "This link has expired"
    assert phone.problems == []


def test_a_full_session_thanks_and_refuses_the_extra_photo_without_sending_it(site, persona, phone):
    session = create_session(site, persona, long_polling=True, max_images=2)
    phone.goto(session["upload_url"])

    phone.locator("#gallery-input").set_input_files([photo(f"p{index}.jpg", image_bytes()) for index in range(3)])

    phone.get_by_text("Your 2 photos were received. You can close this page.").wait_for()
    assert sorted(states(phone)) == ["error", "received", "received"]
    assert (
        "No more photos can be added: the limit of 2 photos is reached."
        in rows(phone).locator(".file-state").all_inner_texts()
    )
    assert Image.objects.filter(session_id=session["id"]).count() == 2


def test_the_page_speaks_french_and_goes_dark(site, persona, phone, webhook_receiver):
    session = webhook_session(site, persona, webhook_receiver, max_images=4)
    phone.goto(session["upload_url"] + "?lang=fr&colorScheme=dark")
    assert phone.locator("h1").inner_text() == "Envoyez vos photos"
    background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 19, 26)"

    phone.locator("#gallery-input").set_input_files([photo("photo.jpg", image_bytes())])

    phone.locator('#files li[data-state="sent"]').wait_for()
    assert rows(phone).locator(".file-state").inner_text() == "Envoyée"
    assert phone.locator("#counter").inner_text() == "1 photo reçue sur 4"


EMBEDDER = """<!doctype html><title>Shop</title>
<iframe id="upload" src="{url}" width="390" height="700"></iframe>
<script>window.received = []; window.addEventListener("message", event => window.received.push(event.data));</script>"""


@pytest.fixture
def embedder():
    """Another site (`localhost`, while the upload page is on 127.0.0.1) whose page frames `embedder.frame_url`."""
    embedding = {"url": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = EMBEDDER.format(url=embedding["url"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.embedding = embedding
    server.page_url = f"http://localhost:{server.server_address[1]}/claim"
    yield server
    server.shutdown()
    server.server_close()


def test_an_embedding_page_hears_what_happens_in_the_iframe(site, persona, phone, embedder):
    session = create_session(site, persona, long_polling=True, max_images=5)
    embedder.embedding["url"] = session["upload_url"]
    phone.goto(embedder.page_url)
    frame = phone.frame_locator("#upload")
    frame.get_by_text("Take photo").wait_for()

    frame.locator("#gallery-input").set_input_files([photo("claim.jpg", image_bytes())])
    frame.locator('#files li[data-state="received"]').wait_for()
    frame.get_by_role("button", name="Done").click()
    frame.get_by_text("Your photo was received. You can close this page.").wait_for()

    messages = phone.evaluate("window.received")
    image = Image.objects.get(session_id=session["id"])
    assert [message["type"] for message in messages] == ["apertur:image:received", "apertur:session:complete"]
    assert messages[0]["data"]["imageId"] == image.pk and messages[0]["data"]["filename"] == "claim.jpg"
    assert messages[1]["data"] == {"sessionId": session["id"], "imagesCount": 1, "byDone": True}


def test_a_key_with_allowed_domains_keeps_the_page_out_of_other_sites_frames(site, persona, phone, embedder):
    persona.api_key.allowed_domains = ["portal.example"]
    persona.api_key.save()
    session = create_session(site, persona, long_polling=True)
    embedder.embedding["url"] = session["upload_url"]
    refusals = []
    phone.on("console", lambda message: "frame-ancestors" in message.text and refusals.append(message.text))

    phone.goto(embedder.page_url)

    wait_until(lambda: refusals, timeout=10)
    assert phone.frame_locator("#upload").locator("#heading").count() == 0  # nothing of the page was shown
    phone.problems.clear()  # the refusal is what this test expects
