"""The webdav destination against real local wsgidav servers: the share at `/`, and below a Nextcloud-style prefix."""

import base64
import hashlib
import io
import time
import tracemalloc
import uuid
from dataclasses import replace

import pytest
import requests

from apertur.deadlines import Deadline
from delivery.models import Delivery
from destinations.backends.base import AttemptContext, DeliveryError
from destinations.backends.webdav import WebdavBackend, WebdavConfig
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    UserHostContract,
    make_staged_image,
    rendered_path,
)
from tests.destinations.helpers import create_destination, create_session, upload_image
from tests.destinations.test_destinations_api import assert_no_secret, assert_validation_error, destinations_url
from tests.destinations.test_webhook_backend import kept_webhook_backend
from tests.factories import make_persona, noisy_jpeg, wait_until
from tests.servers.https_receiver import write_localhost_certificate
from tests.servers.s3 import free_port
from tests.servers.tarpit import TarpitServer
from tests.servers.webdav import (
    PASSWORD,
    USERNAME,
    UTF8_PASSWORD,
    UTF8_USERNAME,
    Misbehaviour,
    WebdavServer,
    files_under,
    start_webdav_server,
)
from tests.servers.webhook_receiver import WebhookReceiver

# How Nextcloud (SabreDAV) explains a refusal in its error body.
SABRE_QUOTA_ERROR = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">'
    b"<s:exception>Sabre\\DAV\\Exception\\InsufficientStorage</s:exception>"
    b"<s:message>Insufficient space in /alice/files, 1048576 required</s:message></d:error>"
)


def webdav_backend(server: WebdavServer, url: str, **config) -> WebdavBackend:
    return WebdavBackend(WebdavConfig.model_validate(server.config(url, **config)))


def kept_webdav_backend(server: WebdavServer, url: str, **config) -> WebdavBackend:
    """As the delivery engine builds it: reusing this thread's kept connections."""
    return WebdavBackend(
        WebdavConfig.model_validate(server.config(url, **config)), AttemptContext(keep_connections=True)
    )


class WebdavTarget(ContractTarget):
    """A fresh folder of the share per test: the destination's `url` points at it."""

    def __init__(self, server: WebdavServer) -> None:
        self.server = server
        self.url, self.folder = server.new_folder()

    def backend(self) -> WebdavBackend:
        return webdav_backend(self.server, self.url)

    def failing_backend(self) -> WebdavBackend:
        # Its folders are made, then the server refuses every upload as a full quota does (507, retried later).
        (self.folder / "full").mkdir()
        url = f"{self.url}full/"
        self.server.misbehave(url, Misbehaviour.ANSWER, methods=frozenset({"PUT"}), status=507)
        return webdav_backend(self.server, url)

    def backend_with_refused_credentials(self) -> WebdavBackend:
        return webdav_backend(self.server, self.url, password="not-the-password")

    def delivered(self) -> dict[str, bytes]:
        return files_under(self.folder)

    def location(self, image, path: str) -> str:
        return path


class TestWebdavBackend(BackendContract, UserHostContract):
    @pytest.fixture
    def target(self, webdav_server) -> WebdavTarget:
        return WebdavTarget(webdav_server)


class TestWebdavBackendBelowANextcloudStylePrefix(BackendContract, UserHostContract):
    @pytest.fixture
    def target(self, nextcloud_style_webdav_server) -> WebdavTarget:
        return WebdavTarget(nextcloud_style_webdav_server)


# --- paths and folders --------------------------------------------------------------------------------


def test_a_nextcloud_url_and_a_remote_path_put_the_image_below_both(nextcloud_style_webdav_server):
    server = nextcloud_style_webdav_server
    # The URL exactly as Nextcloud shows it under Files settings → WebDAV, with a folder of the user's below it.
    url = server.share_url
    folder = f"Photos {uuid.uuid4().hex[:8]}"
    backend = webdav_backend(server, url, remotePath=f"/{folder}/Apertur/")
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = backend.remote_path(image)

    receipt = backend.deliver(image, path)

    assert url == f"http://localhost:{server.port}/remote.php/dav/files/davuser/"
    assert path == f"{folder}/Apertur/{rendered_path(image)}"
    assert files_under(server.root / folder) == {f"Apertur/{rendered_path(image)}": image.open().read()}
    encoded_folder = folder.replace(" ", "%20")
    assert receipt.remote_reference == f"{url}{encoded_folder}/Apertur/{rendered_path(image)}"
    session_folder = f"/remote.php/dav/files/davuser/{folder}/Apertur/{image.session_id}/"
    # The deepest folder first; up while the parent is missing; then down again.
    assert [(r.method, r.path, r.status) for r in server.requests_below(f"{url}{encoded_folder}/")] == [
        ("MKCOL", session_folder, 409),
        ("MKCOL", f"/remote.php/dav/files/davuser/{folder}/Apertur/", 409),
        ("MKCOL", f"/remote.php/dav/files/davuser/{folder}/", 201),
        ("MKCOL", f"/remote.php/dav/files/davuser/{folder}/Apertur/", 201),
        ("MKCOL", session_folder, 201),
        ("PUT", f"{session_folder}{rendered_path(image).rsplit('/', 1)[1]}", 201),
    ]


def test_the_next_image_of_a_session_costs_one_mkcol_and_one_put(webdav_server):
    url, folder = webdav_server.new_folder()
    backend = webdav_backend(webdav_server, url)
    first = make_staged_image(noisy_jpeg((160, 120)))
    second = make_staged_image(noisy_jpeg((160, 120)), index=4, image_id="img_01JCONTRACT0000000000000002")
    backend.deliver(first, backend.remote_path(first))
    already = len(webdav_server.requests_below(url))

    backend.deliver(second, backend.remote_path(second))

    assert [(r.method, r.status) for r in webdav_server.requests_below(url)[already:]] == [
        ("MKCOL", 405),
        ("PUT", 201),
    ]
    assert set(files_under(folder)) == {backend.remote_path(first), backend.remote_path(second)}


def test_every_path_segment_is_percent_encoded(webdav_server):
    url, folder = webdav_server.new_folder()
    # Spaces, non-ASCII, and the characters that would end a URL's path ('?', '#') or be read as an escape ('%').
    remote_path = "Client A/été #1?/100% done"
    backend = webdav_backend(webdav_server, url, remotePath=remote_path)
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = backend.remote_path(image)

    receipt = backend.deliver(image, path)

    assert files_under(folder) == {f"{remote_path}/{rendered_path(image)}": image.open().read()}
    assert f"/Client%20A/%C3%A9t%C3%A9%20%231%3F/100%25%20done/{image.session_id}/" in receipt.remote_reference


def test_a_url_may_carry_percent_escapes_and_non_ascii_letters(webdav_server):
    # As users copy it: a space already escaped, an accented letter as typed.
    (webdav_server.root / "Fotos Jérôme").mkdir(exist_ok=True)
    url = f"{webdav_server.share_url}Fotos%20Jérôme/"
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)

    receipt = webdav_backend(webdav_server, url).deliver(image, path)

    assert (webdav_server.root / "Fotos Jérôme" / path).read_bytes() == image.open().read()
    assert receipt.remote_reference == f"{webdav_server.share_url}Fotos%20J%C3%A9r%C3%B4me/{path}"


def test_a_url_whose_folder_does_not_exist_is_a_permanent_error_naming_it(webdav_server):
    url = f"{webdav_server.share_url}no-such-folder-{uuid.uuid4().hex[:8]}/"
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(webdav_server, url, remotePath="a/b").deliver(image, f"a/b/{rendered_path(image)}")

    assert raised.value.message.startswith(f"the folder {url} does not exist on the WebDAV server")
    assert (raised.value.permanent, raised.value.needs_reconnect, raised.value.http_status) == (True, False, 409)
    assert [r.status for r in webdav_server.requests_below(url)] == [409, 409, 409]  # and nothing made


def test_a_file_where_a_folder_is_needed_is_a_permanent_error(webdav_server):
    url, folder = webdav_server.new_folder()
    (folder / "photos").write_bytes(b"a file, not a folder")
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(webdav_server, url, remotePath="photos").deliver(image, f"photos/{rendered_path(image)}")

    assert raised.value.message.startswith(f"HTTP 409 from the WebDAV server for MKCOL {url}photos/")
    assert raised.value.message.endswith("(a folder on its way is missing or a file)")
    assert raised.value.permanent is True
    # MKCOL of "photos" answered 405 as for a folder that exists; its subfolder could not be made: no upload.
    assert [(r.method, r.status) for r in webdav_server.requests_below(url)] == [
        ("MKCOL", 409),
        ("MKCOL", 405),
        ("MKCOL", 409),
    ]


# --- a transfer that breaks off -----------------------------------------------------------------------


def test_an_upload_that_breaks_off_half_way_fails_and_its_retry_leaves_exactly_one_complete_file(webdav_server):
    url, folder = webdav_server.new_folder()
    data = noisy_jpeg((1024, 768))
    image = make_staged_image(data)
    backend = webdav_backend(webdav_server, url)
    path = backend.remote_path(image)
    webdav_server.misbehave(url, Misbehaviour.CUT_UPLOAD, methods=frozenset({"PUT"}))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert (raised.value.permanent, raised.value.http_status) == (False, 500)
    # wsgidav writes in place, so what arrived before the break is at the final path; most servers commit a PUT
    # whole instead (docs/destinations.md "Types"). The retry overwrites it either way.
    assert len(files_under(folder)[path]) < len(data)
    webdav_server.behave(url)
    backend.deliver(replace(image, attempt=2), path)
    assert files_under(folder) == {path: data}


# --- answers ------------------------------------------------------------------------------------------


def test_a_refused_password_flags_reconnect_and_is_retried(webdav_server):
    url, folder = webdav_server.new_folder()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(webdav_server, url, password="wrong").deliver(image, rendered_path(image))

    assert raised.value.message.startswith("HTTP 401 from the WebDAV server for MKCOL")
    assert (raised.value.needs_reconnect, raised.value.permanent, raised.value.http_status) == (True, False, 401)
    assert files_under(folder) == {}


def test_a_password_outside_latin_1_is_sent_as_utf_8(webdav_server):
    url, folder = webdav_server.new_folder()
    image = make_staged_image(noisy_jpeg((160, 120)))

    webdav_backend(webdav_server, url, username=UTF8_USERNAME, password=UTF8_PASSWORD).deliver(
        image, rendered_path(image)
    )

    assert files_under(folder) == {rendered_path(image): image.open().read()}


@pytest.mark.parametrize(
    ("status", "needs_reconnect", "permanent"),
    [
        (403, True, False),  # the account may not write there: the user fixes the account, deliveries retry
        (500, False, False),
        (503, False, False),
        (423, False, False),  # locked by someone else for now
        (429, False, False),
        (400, False, True),
        (413, False, True),  # the server takes no file this large
        (415, False, True),
    ],
)
def test_an_answer_to_the_upload_is_classified(webdav_server, status, needs_reconnect, permanent):
    url, _ = webdav_server.new_folder()
    webdav_server.misbehave(url, Misbehaviour.ANSWER, methods=frozenset({"PUT"}), status=status)
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(webdav_server, url).deliver(image, path)

    assert raised.value.message.startswith(f"HTTP {status} from the WebDAV server for PUT {url}{path}")
    assert (raised.value.needs_reconnect, raised.value.permanent) == (needs_reconnect, permanent)
    assert raised.value.http_status == status


def test_a_full_nextcloud_quota_is_retried_with_the_servers_own_explanation(webdav_server):
    url, _ = webdav_server.new_folder()
    webdav_server.misbehave(url, Misbehaviour.ANSWER, methods=frozenset({"PUT"}), status=507, body=SABRE_QUOTA_ERROR)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(webdav_server, url).deliver(image, rendered_path(image))

    assert raised.value.message.endswith(": Insufficient space in /alice/files, 1048576 required")
    assert (raised.value.needs_reconnect, raised.value.permanent, raised.value.http_status) == (False, False, 507)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_reported_and_not_followed(webdav_server, status):
    url, _ = webdav_server.new_folder()
    elsewhere, elsewhere_folder = webdav_server.new_folder()
    webdav_server.misbehave(url, Misbehaviour.ANSWER, status=status, headers={"Location": elsewhere})
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(webdav_server, url).deliver(image, rendered_path(image))

    assert f"redirects are not followed; it points to {elsewhere}" in raised.value.message
    assert (raised.value.permanent, raised.value.http_status) == (False, status)
    assert [r.method for r in webdav_server.requests_below(url)] == ["MKCOL"]
    assert webdav_server.requests_below(elsewhere) == []
    assert files_under(elsewhere_folder) == {}


def test_an_unreachable_server_is_a_failure_that_will_be_retried():
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = WebdavBackend(
        WebdavConfig(url=f"http://127.0.0.1:{free_port()}/dav/", username=USERNAME, password=PASSWORD)
    )

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message.startswith("WebDAV server unreachable or connection lost during MKCOL:")
    assert raised.value.permanent is False


def test_a_server_that_does_not_answer_times_out_and_is_retried(settings):
    settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS = 0.3
    server = TarpitServer(mode="hold", limit=5)
    image = make_staged_image(noisy_jpeg((160, 120)))
    try:
        with pytest.raises(DeliveryError) as raised:
            webdav_backend_for_url(f"{server.url}/dav/").deliver(image, rendered_path(image))
    finally:
        server.stop()

    assert raised.value.message == "the WebDAV server did not answer MKCOL within 0.3 s"
    assert raised.value.permanent is False


def test_a_wait_cut_short_by_the_attempt_deadline_says_so():
    server = TarpitServer(mode="hold", limit=5)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = webdav_backend_for_url(f"{server.url}/dav/")
    # Not entered, so no timer shuts sockets: only the per-request timeout, capped by what remains, can end it.
    backend.context = AttemptContext(deadline=Deadline(0.5))
    try:
        with pytest.raises(DeliveryError) as raised:
            backend.deliver(image, rendered_path(image))
    finally:
        server.stop()

    assert raised.value.message == "the attempt's deadline passed during MKCOL"
    assert raised.value.permanent is False


def webdav_backend_for_url(url: str) -> WebdavBackend:
    return WebdavBackend(WebdavConfig(url=url, username=USERNAME, password=PASSWORD))


# --- https --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_webdav_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("webdav-https")
    server = start_webdav_server(directory, certificate=write_localhost_certificate(directory))
    yield server
    server.stop()


def test_an_https_server_is_verified_against_the_host_name_in_the_url(https_webdav_server, settings):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(https_webdav_server.certificate)
    url, folder = https_webdav_server.new_folder()
    image = make_staged_image(noisy_jpeg((160, 120)))

    receipt = webdav_backend(https_webdav_server, url).deliver(image, rendered_path(image))

    assert receipt.remote_reference.startswith("https://localhost:")
    assert files_under(folder) == {rendered_path(image): image.open().read()}


def test_an_https_certificate_that_is_not_trusted_fails_the_attempt(https_webdav_server, settings):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = ""
    url, folder = https_webdav_server.new_folder()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        webdav_backend(https_webdav_server, url).deliver(image, rendered_path(image))

    assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message
    assert files_under(folder) == {}


# --- size and time ------------------------------------------------------------------------------------


def test_a_20_mb_image_is_streamed_without_being_held_in_memory(webdav_server, tmp_path):
    size = 20 * 1024 * 1024
    source = tmp_path / "large.jpg"
    with source.open("wb") as file:
        for _ in range(20):
            file.write(b"\xa5" * (1024 * 1024))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    url, folder = webdav_server.new_folder()
    image = make_staged_image(b"", size_bytes=size, sha256=digest, opener=lambda: source.open("rb"))
    path = rendered_path(image)
    backend = webdav_backend(webdav_server, url)

    tracemalloc.start()
    try:
        backend.deliver(image, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte image"
    stored = folder / path
    assert stored.stat().st_size == size
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    # Read back through the server too, as a user's client would.
    answer = requests.get(f"{url}{path}", auth=(USERNAME, PASSWORD), timeout=30)
    assert hashlib.sha256(answer.content).hexdigest() == digest


class UnmeasurableStream:
    """A staged stream requests cannot measure (no fileno, no seek), like a file read from a staging bucket."""

    def __init__(self, data: bytes) -> None:
        self.source = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.source.read(size)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "UnmeasurableStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def test_the_upload_carries_its_length_and_type_even_from_a_stream_of_unknown_length(webdav_server):
    url, folder = webdav_server.new_folder()
    data = noisy_jpeg((320, 240))
    image = make_staged_image(data, opener=lambda: UnmeasurableStream(data))
    path = rendered_path(image)

    webdav_backend(webdav_server, url).deliver(image, path)

    [upload] = [r for r in webdav_server.requests_below(url) if r.method == "PUT"]
    assert upload.headers["Content-Length"] == str(len(data))
    assert upload.headers["Content-Type"] == "image/jpeg"
    assert "Transfer-Encoding" not in upload.headers
    assert upload.headers["User-Agent"].startswith("Apertur/")
    assert files_under(folder) == {path: data}


def test_a_server_that_reads_an_upload_slowly_is_cut_at_the_attempt_deadline(webdav_server):
    # Each block is taken within a fraction of a second, so no per-read timeout fires: only the attempt's deadline,
    # which shuts the registered socket, ends the ~25 s upload.
    url, folder = webdav_server.new_folder()
    webdav_server.misbehave(url, Misbehaviour.SLOW_UPLOAD, methods=frozenset({"PUT"}))
    image = make_staged_image(bytes(16 * 1024 * 1024))
    path = rendered_path(image)
    backend = webdav_backend(webdav_server, url)

    started = time.monotonic()
    with Deadline(1.0) as deadline:
        backend.context = AttemptContext(deadline=deadline)
        with pytest.raises(DeliveryError) as raised:
            backend.deliver(image, path)
    elapsed = time.monotonic() - started

    assert webdav_server.slowed.is_set()
    # Ended by the deadline's timer (which shuts the socket) or, when that thread is late, by the socket timeout
    # the deadline capped: either way when the deadline passed.
    assert deadline.remaining() == 0
    assert elapsed < 5, (elapsed, raised.value.message)
    assert raised.value.message.startswith("WebDAV server unreachable or connection lost during PUT")
    assert raised.value.permanent is False
    # The connection was cut mid-transfer; the next attempt leaves exactly one complete file (once the server has
    # taken what was still on its way, so the old upload cannot write after the new one).
    webdav_server.behave(url)
    wait_until(lambda: [r.method for r in webdav_server.requests_below(url)] == ["MKCOL", "PUT"])
    backend.context = AttemptContext()
    backend.deliver(replace(image, attempt=2), path)
    assert files_under(folder) == {path: image.open().read()}


def test_an_answer_dripped_on_a_kept_alive_connection_is_cut_at_the_attempt_deadline():
    # The folder is made at once and the connection kept alive; the upload's answer then comes one byte at a
    # time on that same connection, so the deadline has to shut a socket it was handed before the PUT.
    server = TarpitServer(mode="drip", interval=0.1, limit=20, quick=1)
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = webdav_backend_for_url(f"{server.url}/dav/")
    started = time.monotonic()
    try:
        with Deadline(1.0) as deadline:
            backend.context = AttemptContext(deadline=deadline)
            with pytest.raises(DeliveryError) as raised:
                backend.deliver(image, rendered_path(image))
        elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert (server.accepted, server.connections) == (1, 1)
    assert deadline.expired
    assert elapsed < 5, (elapsed, raised.value.message)
    assert raised.value.message.startswith("WebDAV server unreachable or connection lost during PUT")


# --- kept connections (docs/destinations.md "How attempts run") ----------------------------------------


def test_deliveries_in_one_thread_reuse_one_connection(webdav_server):
    url, folder = webdav_server.new_folder()
    images = [make_staged_image(noisy_jpeg((160, 120)), index=i, image_id=f"img_kept{i}") for i in range(3)]

    for image in images:
        backend = kept_webdav_backend(webdav_server, url)
        backend.deliver(image, backend.remote_path(image))

    requests_made = webdav_server.requests_below(url)
    assert [r.method for r in requests_made] == ["MKCOL", "PUT", "MKCOL", "PUT", "MKCOL", "PUT"]
    assert len({r.client_port for r in requests_made}) == 1
    assert len(files_under(folder)) == 3


def test_a_destinations_credentials_never_reach_another_destination_served_by_the_same_thread(
    webdav_server, nextcloud_style_webdav_server
):
    first_url, _ = webdav_server.new_folder()
    second_url, second_folder = nextcloud_style_webdav_server.new_folder()
    receiver = WebhookReceiver().start()
    image = make_staged_image(noisy_jpeg((160, 120)))
    try:
        kept_webdav_backend(webdav_server, first_url, username=UTF8_USERNAME, password=UTF8_PASSWORD).deliver(
            image, rendered_path(image)
        )
        kept_webdav_backend(nextcloud_style_webdav_server, second_url).deliver(image, rendered_path(image))
        kept_webhook_backend(f"{receiver.url}/hook").deliver(image, rendered_path(image))
        [to_webhook] = receiver.wait_for_requests(1)
    finally:
        receiver.stop()

    first_authorization = "Basic " + base64.b64encode(f"{UTF8_USERNAME}:{UTF8_PASSWORD}".encode()).decode()
    second_authorization = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    assert {r.headers["Authorization"] for r in webdav_server.requests_below(first_url)} == {first_authorization}
    assert {r.headers["Authorization"] for r in nextcloud_style_webdav_server.requests_below(second_url)} == {
        second_authorization
    }
    assert to_webhook.header("Authorization") is None
    assert files_under(second_folder) == {rendered_path(image): image.open().read()}


def test_a_kept_https_connection_is_not_reused_once_the_ca_bundle_no_longer_trusts_it(https_webdav_server, settings):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(https_webdav_server.certificate)
    url, _ = https_webdav_server.new_folder()
    image = make_staged_image(noisy_jpeg((160, 120)))
    kept_webdav_backend(https_webdav_server, url).deliver(image, rendered_path(image))
    settings.APERTUR_OUTBOUND_CA_BUNDLE = ""

    with pytest.raises(DeliveryError) as raised:
        kept_webdav_backend(https_webdav_server, url).deliver(replace(image, attempt=2), rendered_path(image))

    assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message


# --- config and API -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"url": "ftp://files.example.com/dav/"}, "url", "must be an http:// or https:// URL with a host"),
        ({"url": "files.example.com/dav/"}, "url", "must be an http:// or https:// URL with a host"),
        ({"url": "https:///dav/"}, "url", "must be an http:// or https:// URL with a host"),
        ({"url": "https://alice:secret@cloud.example.com/dav/"}, "url", "must not carry credentials"),
        ({"url": "https://cloud.example.com/dav/?x=1"}, "url", "must not have a query or fragment"),
        ({"url": "https://cloud.example.com/dav/#top"}, "url", "must not have a query or fragment"),
        ({"url": "https://cloud.example.com/my files/"}, "url", "must not contain spaces"),
        ({"url": "https://cloud.example.com:99999/dav/"}, "url", "has an invalid port"),
        ({"username": ""}, "username", "must not be empty"),
        ({"username": "alice:admin"}, "username", "must not contain ':'"),
        ({"remotePath": "a\r\nb"}, "remotePath", "must not contain control characters"),
        ({"pathTemplate": "{session_id}/x"}, "pathTemplate", "Extra inputs are not permitted"),
    ],
)
def test_config_is_validated_strictly(config, field, message):
    base = {"url": "https://cloud.example.com/remote.php/dav/files/alice/", "username": "alice", "password": "p"}

    with pytest.raises(ValueError, match=message) as raised:
        WebdavConfig.model_validate({**base, **config})

    assert raised.value.errors()[0]["loc"] == (field,)


def test_the_api_creates_a_webdav_destination_with_its_password_masked_and_tests_it(
    api_client, owner, nextcloud_style_webdav_server
):
    server = nextcloud_style_webdav_server
    url, folder = server.new_folder()
    config = server.config(url, remotePath="incoming")

    created = api_client.post(
        destinations_url(owner), {"type": "webdav", "name": "Nextcloud", "config": config}, format="json", **owner.auth
    )
    assert created.status_code == 201, created.content
    destination = created.json()
    tested = api_client.post(destinations_url(owner, destination["id"], "test"), format="json", **owner.auth)
    listed = api_client.get(destinations_url(owner), **owner.auth)

    assert destination["config"] == {**config, "password": "••••"}
    assert_no_secret(created, PASSWORD)
    assert_no_secret(listed, PASSWORD)
    assert tested.status_code == 200, tested.content
    assert tested.json()["success"] is True, tested.json()
    assert tested.json()["status"] == 201
    [test_file] = files_under(folder)
    assert test_file.startswith("apertur-test/") and test_file.endswith(".png")


def test_a_refused_password_flags_needs_reconnect_until_the_password_is_fixed(api_client, owner, webdav_server):
    url, folder = webdav_server.new_folder()
    destination = create_destination(api_client, owner, "webdav", webdav_server.config(url, password="wrong"))
    destination_url = destinations_url(owner, destination["id"])

    refused = api_client.post(f"{destination_url}/test", **owner.auth).json()
    flagged = api_client.get(destinations_url(owner), **owner.auth).json()[0]
    api_client.patch(destination_url, {"config": {"password": PASSWORD}}, format="json", **owner.auth)
    accepted = api_client.post(f"{destination_url}/test", **owner.auth).json()
    cleared = api_client.get(destinations_url(owner), **owner.auth).json()[0]

    assert (refused["success"], refused["status"]) == (False, 401)
    assert refused["error"].startswith(f"HTTP 401 from the WebDAV server for MKCOL {url}apertur-test/")
    assert (flagged["needsReconnect"], flagged["lastError"]) == (True, refused["error"])
    assert accepted["success"] is True, accepted
    assert (cleared["needsReconnect"], cleared["lastError"]) == (False, None)
    [test_file] = files_under(folder)
    assert test_file.startswith("apertur-test/")


@pytest.mark.timeout(60)
def test_an_upload_is_delivered_to_a_nextcloud_style_folder(worker, api_client, nextcloud_style_webdav_server):
    server = nextcloud_style_webdav_server
    persona = make_persona("owner")
    url, folder = server.new_folder()
    destination = create_destination(api_client, persona, "webdav", server.config(url, remotePath="Apertur/Uploads"))
    session = create_session(api_client, persona, [destination["id"]])
    data = noisy_jpeg()

    image = upload_image(api_client, session["id"], data, name="beach.jpg")

    wait_until(lambda: Delivery.objects.filter(image_id=image["id"], status="delivered").exists())
    path = f"Apertur/Uploads/{session['id']}/0_{image['id']}.jpg"
    assert files_under(folder) == {path: data}
    delivery = Delivery.objects.get(image_id=image["id"])
    assert delivery.remote_reference == f"{url}{path}"
    assert delivery.attempts == 1


def test_the_api_refuses_a_bad_webdav_config_on_create_and_patch(api_client, owner, webdav_server):
    url, _ = webdav_server.new_folder()
    bad_scheme = api_client.post(
        destinations_url(owner),
        {"type": "webdav", "name": "DAV", "config": webdav_server.config("ftp://files.example.com/")},
        format="json",
        **owner.auth,
    )
    unknown_key = api_client.post(
        destinations_url(owner),
        {"type": "webdav", "name": "DAV", "config": webdav_server.config(url, root="/")},
        format="json",
        **owner.auth,
    )
    destination = api_client.post(
        destinations_url(owner),
        {"type": "webdav", "name": "DAV", "config": webdav_server.config(url)},
        format="json",
        **owner.auth,
    ).json()
    patched = api_client.patch(
        destinations_url(owner, destination["id"]),
        {"config": {"url": "https://cloud.example.com/dav/?user=alice"}},
        format="json",
        **owner.auth,
    )
    kept = api_client.patch(
        destinations_url(owner, destination["id"]), {"config": {"remotePath": "new"}}, format="json", **owner.auth
    )

    assert_validation_error(bad_scheme, {"config.url": ["must be an http:// or https:// URL with a host"]})
    assert_validation_error(unknown_key, {"config.root": ["unknown field"]})
    assert_validation_error(
        patched,
        {"config.url": ["must not have a query or fragment (percent-encode '?' as %3F and '#' as %23)"]},
    )
    assert_no_secret(bad_scheme, PASSWORD)
    assert_no_secret(unknown_key, PASSWORD)
    assert kept.status_code == 200, kept.content
    assert kept.json()["config"]["password"] == "••••"
    assert kept.json()["config"]["remotePath"] == "new"


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example.com"])
def test_the_api_refuses_a_webdav_url_whose_host_no_lookup_can_take(api_client, owner, host):
    response = api_client.post(
        destinations_url(owner),
        {
            "type": "webdav",
            "name": "Bad host",
            "config": {"url": f"http://{host}/dav/", "username": "u", "password": "p"},
        },
        format="json",
        **owner.auth,
    )

    assert_validation_error(response, {"config.url": [f"{host} is not a valid host name"]})
