"""A project's sessions in a real browser (Chromium) against the real site with its worker: a member makes a session
from the dashboard, a phone sends photos into it, and the delivery matrix follows each delivery live, a failure
with its error, and a Retry, without the page being reloaded."""

import pytest
from playwright.sync_api import expect

from destinations.services import destination_create
from sessions_app.models import UploadSession
from tests.conftest import ServerProcess
from tests.e2e.conftest import make_owner, sign_in
from tests.factories import noisy_jpeg

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def site(transactional_db, tmp_path):
    # A failed attempt is tried once more 0.2 s later, then the delivery is failed: the journey need not wait.
    server = ServerProcess(
        with_worker=True,
        log_path=tmp_path / "server.log",
        APERTUR_SWEEP_INTERVAL_SECONDS="0.5",
        APERTUR_RETRY_DELAYS="0.2",
    )
    yield server
    server.stop()


def photo(name: str) -> dict:
    return {"name": name, "mimeType": "image/jpeg", "buffer": noisy_jpeg((640, 480))}


def test_a_member_follows_a_sessions_deliveries_live_and_retries_a_failed_one(site, page, phone, webhook_receiver):
    project, _ = make_owner()
    destination_create(
        project=project,
        type="webhook",
        name="Claims webhook",
        config={"url": f"{webhook_receiver.url}/hook", "secret": "s3cret-value"},
    )
    sign_in(page, site.url)
    page.get_by_role("link", name="Claims").click()
    page.get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="New session").click()
    page.get_by_label("Label").fill("Claim 4711")
    page.get_by_label("Claims webhook").check()
    page.get_by_label("Tags").fill("claim:4711")
    # The page follows the session through the API's event stream, with the browser's session (docs/api.md
    # "Dashboard access"): its answer must be the stream, not a refusal that leaves the page polling.
    with page.expect_response(lambda answer: "/events?project=" in answer.url) as stream:
        page.get_by_role("button", name="Create session").click()
    assert stream.value.status == 200
    assert stream.value.headers["content-type"].startswith("text/event-stream")

    page.get_by_role("heading", name="Claim 4711").wait_for()
    session = UploadSession.objects.get(label="Claim 4711")
    upload_url = page.get_by_role("textbox", name="Upload link").input_value()
    assert upload_url == f"{site.url}/u/{session.pk}"
    page.wait_for_function("() => document.querySelector('img.qr').naturalWidth === 240")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    matrix = page.locator("#matrix")

    phone.goto(upload_url)
    phone.locator("#gallery-input").set_input_files([photo(f"photo-{index}.jpg") for index in range(3)])

    expect(matrix.locator('td[data-status="delivered"]')).to_have_count(3)
    assert len(webhook_receiver.requests) == 3
    # Each row shows its photo: a 160 px thumbnail of the 640 x 480 original.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#matrix img.thumb')]"
        ".filter(image => image.complete && image.naturalWidth === 160).length === 3"
    )

    webhook_receiver.respond = lambda request: 500
    phone.locator("#gallery-input").set_input_files([photo("photo-3.jpg")])

    failed = matrix.locator('td[data-status="failed"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("HTTP 500 from the webhook")
    expect(failed).to_contain_text("2 attempts")
    expect(matrix).to_have_attribute("data-status", "uploading")  # open, one delivery failed

    webhook_receiver.respond = lambda request: 200
    failed.get_by_role("button", name="Retry photo 4 to Claims webhook").click()

    expect(matrix.locator('td[data-status="delivered"]')).to_have_count(4)
    expect(page.locator("#retry-message")).to_have_text("The delivery is being tried again.")
    assert page.evaluate("window.sameDocument") is True
    assert page.problems == [] and phone.problems == []
