"""Reliability of one attempt and fairness between tenants: a total deadline per attempt whatever the receiver
does, and a slow destination that cannot take every worker thread."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from apertur.deadlines import Deadline
from apertur.http import outbound_session, provider_session
from delivery.models import Delivery
from delivery.services import delivery_execute
from destinations.backends.base import AttemptContext, DeliveryError
from destinations.backends.s3 import S3Backend, S3Config
from tests.conftest import in_process_worker
from tests.destinations.contract import make_staged_image, rendered_path
from tests.destinations.helpers import FixedAnswerServer, create_destination, create_session, upload_image
from tests.factories import image_bytes, make_persona, noisy_jpeg, wait_until
from tests.servers.https_receiver import write_localhost_certificate
from tests.servers.tarpit import TarpitServer

DEADLINE = 1.5


@pytest.fixture
def drip():
    server = TarpitServer(mode="drip", interval=0.3)  # the status line alone would take ~20 s
    yield server
    server.stop()


@pytest.fixture
def short_deadline(settings):
    settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT = DEADLINE


def deliver_now(api_client, persona, destination: dict) -> Delivery:
    session = create_session(api_client, persona, [destination["id"]])
    image = upload_image(api_client, session["id"], image_bytes())
    delivery = Delivery.objects.get(image_id=image["id"])
    started = time.monotonic()
    delivery_execute(delivery_id=str(delivery.pk))
    delivery.elapsed = time.monotonic() - started
    delivery.refresh_from_db()
    return delivery


def test_a_webhook_that_drips_its_answer_is_cut_at_the_attempt_deadline(api_client, owner, drip, short_deadline):
    destination = create_destination(api_client, owner, "webhook", {"url": f"{drip.url}/hook", "secret": "drip-secret"})

    delivery = deliver_now(api_client, owner, destination)

    assert delivery.elapsed < DEADLINE + 1
    assert delivery.status == "pending"  # a failed attempt, retried on the schedule
    assert delivery.last_error == f"the attempt did not finish within its {DEADLINE:g} s deadline"
    assert delivery.attempt_log.get().outcome == "failed"


def test_an_s3_endpoint_that_drips_its_answer_is_cut_at_the_attempt_deadline(api_client, owner, drip, short_deadline):
    destination = create_destination(
        api_client,
        owner,
        "s3",
        {"endpoint": drip.url, "bucket": "photos", "accessKey": "key", "secretKey": "secret-key-value"},
    )

    delivery = deliver_now(api_client, owner, destination)

    assert delivery.elapsed < DEADLINE + 1
    assert delivery.last_error == f"the attempt did not finish within its {DEADLINE:g} s deadline"


def test_the_destination_test_endpoint_answers_within_the_deadline(api_client, owner, drip, short_deadline):
    destination = create_destination(api_client, owner, "webhook", {"url": f"{drip.url}/hook", "secret": "drip-secret"})

    started = time.monotonic()
    response = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations/{destination['id']}/test", **owner.auth
    )

    assert time.monotonic() - started < DEADLINE + 1
    assert response.status_code == 200
    assert response.json()["success"] is False
    assert response.json()["error"] == f"the attempt did not finish within its {DEADLINE:g} s deadline"


@pytest.fixture
def four_worker_threads(transactional_db, settings):
    settings.APERTUR_DESTINATION_CONCURRENCY = 2
    settings.APERTUR_CONCURRENCY_DEFER_SECONDS = 0.2
    with in_process_worker(settings, threads=4) as running:
        yield running


def test_a_tenants_tar_pit_does_not_delay_another_tenants_delivery(api_client, four_worker_threads, webhook_receiver):
    slow_tenant, other_tenant = make_persona("slow"), make_persona("other")
    tar_pit = TarpitServer(mode="hold", limit=60)
    try:
        slow = create_destination(api_client, slow_tenant, "webhook", {"url": tar_pit.url, "secret": "slow-secret"})
        slow_session = create_session(api_client, slow_tenant, [slow["id"]])
        for number in range(6):
            upload_image(api_client, slow_session["id"], image_bytes(color=(number, 0, 0)))
        tar_pit.wait_for_connections(2)
        fast = create_destination(
            api_client, other_tenant, "webhook", {"url": f"{webhook_receiver.url}/in", "secret": "fast-secret"}
        )
        fast_session = create_session(api_client, other_tenant, [fast["id"]])

        uploaded = time.monotonic()
        upload_image(api_client, fast_session["id"], image_bytes())
        webhook_receiver.wait_for_requests(1)
        waited = time.monotonic() - uploaded

        tar_pit.release()
        wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 7, timeout=30)
    finally:
        tar_pit.stop()

    assert waited < 1
    assert tar_pit.most_in_flight == 2  # the slow destination never held more than its share of threads
    # Waiting for a free slot is neither an attempt nor a failure.
    assert list(Delivery.objects.values_list("attempts", flat=True).distinct()) == [1]


def test_a_delivery_over_the_cap_waits_without_an_attempt_and_gets_the_next_free_slot_at_once(
    api_client, owner, settings
):
    settings.APERTUR_DESTINATION_CONCURRENCY = 1
    receiver = FixedAnswerServer(200)
    try:
        destination = create_destination(api_client, owner, "webhook", {"url": receiver.url, "secret": "slot-secret"})
        session = create_session(api_client, owner, [destination["id"]])
        first, second = (
            Delivery.objects.get(image_id=upload_image(api_client, session["id"], image_bytes(color=(n, 0, 0)))["id"])
            for n in range(2)
        )
        # The first is in flight (another worker holds it): the second finds no free slot.
        Delivery.objects.filter(pk=first.pk).update(
            status="delivering", lease_expires_at=timezone.now() + timedelta(seconds=60)
        )
        delivery_execute(delivery_id=str(second.pk))
        second.refresh_from_db()
        assert (second.status, second.attempts, second.waiting_for_slot) == ("pending", 0, True)
        assert second.next_retry_at > timezone.now()
        assert receiver.requests == []

        # The first finishes: this worker runs the second at once in its freed slot, not after the fallback wait.
        due = {"status": "pending", "lease_expires_at": None, "next_retry_at": timezone.now()}
        Delivery.objects.filter(pk=first.pk).update(**due)
        delivery_execute(delivery_id=str(first.pk))
    finally:
        receiver.stop()

    second.refresh_from_db()
    assert (second.status, second.attempts, second.waiting_for_slot) == ("delivered", 1, False)
    assert len(receiver.requests) == 2


@pytest.fixture
def tls_files(tmp_path):
    return write_localhost_certificate(tmp_path)


@pytest.mark.parametrize("make_session", [outbound_session, provider_session], ids=["user host", "provider"])
def test_an_https_receiver_that_drips_its_answer_is_cut_at_the_deadline(tls_files, make_session):
    # TLS wraps (and detaches) the socket that was connected: the wrapped one must be under the deadline too.
    server = TarpitServer(mode="drip", interval=0.3, tls_files=tls_files)
    try:
        with Deadline(DEADLINE) as deadline, make_session() as session:
            started = time.monotonic()
            with pytest.raises(requests.RequestException):
                session.post(server.url, data=b"photo", timeout=30, verify=str(tls_files[0]))
            elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert deadline.expired
    assert elapsed < DEADLINE + 1


def test_an_s3_attempt_on_a_kept_alive_connection_is_cut_at_the_deadline():
    # The first request on the connection is answered at once and the connection kept; the next attempt reuses it.
    server = TarpitServer(mode="drip", interval=0.3, quick=1)
    backend = S3Backend(S3Config(endpoint=server.url, bucket="photos", accessKey="key", secretKey="secret-key-value"))
    image = make_staged_image(noisy_jpeg((32, 32)))
    try:
        # The first attempt only opens the connection: a roomy deadline, so a loaded machine building the boto3
        # client (CPU-heavy) cannot fail it. The second is the one under test.
        with Deadline(30) as first:
            backend.context = AttemptContext(deadline=first)
            backend.deliver(image, rendered_path(image))
        with Deadline(DEADLINE) as second:
            backend.context = AttemptContext(deadline=second)
            started = time.monotonic()
            with pytest.raises(DeliveryError):
                backend.deliver(image, rendered_path(image))
            elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert server.accepted == 1  # one TCP connection: the second attempt did reuse it
    assert second.expired
    assert elapsed < DEADLINE + 1


def test_the_test_endpoint_of_an_https_webhook_that_drips_answers_within_the_deadline(
    api_client, owner, tls_files, short_deadline, settings
):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(tls_files[0])  # the receiver's private CA
    server = TarpitServer(mode="drip", interval=0.3, tls_files=tls_files)
    try:
        destination = create_destination(
            api_client, owner, "webhook", {"url": f"{server.url}/hook", "secret": "drip-secret"}
        )
        started = time.monotonic()
        response = api_client.post(
            f"/api/v1/projects/{owner.project.pk}/destinations/{destination['id']}/test", **owner.auth
        )
        elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert server.connections == 1  # the TLS handshake succeeded: the request reached the slow answer
    assert elapsed < DEADLINE + 1
    assert response.json() == {
        "success": False,
        "message": "Test delivery failed.",
        "error": f"the attempt did not finish within its {DEADLINE:g} s deadline",
    }
