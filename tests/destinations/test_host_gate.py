"""The outbound host gate (docs/api.md "Host safety"): checked against the address actually connected to."""

import socket

import pytest

from apertur import http as outbound
from apertur.http import (
    HostNotAllowed,
    check_connected_socket,
    ensure_address_allowed,
    ensure_host_allowed,
    outbound_session,
)
from delivery.models import Delivery
from delivery.services import delivery_execute
from destinations.backends.base import AttemptContext, DeliveryError
from destinations.backends.s3 import S3Backend, S3Config
from destinations.backends.webhook import WebhookBackend, WebhookConfig
from tests.destinations.contract import make_staged_image, rendered_path
from tests.destinations.helpers import create_destination, create_session, upload_image
from tests.factories import noisy_jpeg
from tests.servers.https_receiver import HTTPSReceiver


@pytest.fixture
def allowed_networks(settings):
    """Set APERTUR_ALLOWED_PRIVATE_NETWORKS for one test (the suite's default allows 127.0.0.0/8)."""

    def allow(*cidrs: str) -> None:
        settings.APERTUR_ALLOWED_PRIVATE_NETWORKS = list(cidrs)
        outbound._allowed_private_networks.cache_clear()

    return allow


@pytest.fixture
def loopback_refused(allowed_networks):
    allowed_networks()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.10", "private"),
        ("100.64.0.1", "private"),  # CGNAT
        ("100.127.255.254", "private"),
        ("0.0.0.0", "reserved"),
        ("224.0.0.251", "reserved"),  # multicast
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "reserved"),
        ("fc00::1", "private"),  # unique local
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "reserved"),  # multicast
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("::169.254.169.254", "reserved"),  # IPv4-compatible (deprecated)
        ("::7f00:1", "reserved"),
        ("fec0::1", "reserved"),  # site-local (deprecated)
        ("64:ff9b:1::a9fe:a9fe", "reserved"),  # local-use NAT64
        ("::ffff:0:a9fe:a9fe", "reserved"),  # IPv4-translated
    ],
)
def test_private_and_special_addresses_are_refused_naming_their_kind(loopback_refused, address, kind):
    with pytest.raises(HostNotAllowed) as refused:
        ensure_address_allowed(address)

    assert str(refused.value) == f"{address} is a {kind} address; allow it with APERTUR_ALLOWED_PRIVATE_NETWORKS"


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2a00:1450:4007:80e::200e", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_pass(loopback_refused, address):
    ensure_address_allowed(address)


def test_listed_networks_are_allowed_and_nothing_else(allowed_networks):
    allowed_networks("10.20.0.0/16", "fd00::/8")

    ensure_address_allowed("10.20.30.40")
    ensure_address_allowed("fd12::1")
    ensure_address_allowed("::ffff:10.20.0.1")
    for refused in ("10.21.0.1", "127.0.0.1", "169.254.169.254", "fc00::1", "::1"):
        with pytest.raises(HostNotAllowed):
            ensure_address_allowed(refused)


def test_a_host_name_is_judged_by_the_addresses_it_resolves_to_which_the_refusal_does_not_name(loopback_refused):
    with pytest.raises(HostNotAllowed) as refused:
        ensure_host_allowed("localhost", 80)

    assert str(refused.value) == (
        "localhost resolves to a loopback address; allow it with APERTUR_ALLOWED_PRIVATE_NETWORKS"
    )


def test_a_connected_peer_outside_the_internet_is_refused_by_the_host_name_it_was_reached_for(loopback_refused):
    """The peer check after connecting (a name that changed its answer between the check and the dial)."""
    listening = socket.create_server(("127.0.0.1", 0))
    connected = socket.create_connection(listening.getsockname())
    try:
        with pytest.raises(HostNotAllowed) as refused:
            check_connected_socket(connected, host="photos.example.test")
    finally:
        listening.close()

    assert str(refused.value) == (
        "photos.example.test resolves to a loopback address; allow it with APERTUR_ALLOWED_PRIVATE_NETWORKS"
    )
    assert connected.fileno() == -1  # closed


LOOPBACK_REFUSED = {
    "127.0.0.1": "refused host: 127.0.0.1 is a loopback address; allow it with APERTUR_ALLOWED_PRIVATE_NETWORKS",
    "localhost": (
        "refused host: localhost resolves to a loopback address; allow it with APERTUR_ALLOWED_PRIVATE_NETWORKS"
    ),
}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_webhook_to_loopback_fails_permanently_as_refused_host(loopback_refused, webhook_receiver, host):
    port = webhook_receiver.url.rsplit(":", 1)[1]
    backend = WebhookBackend(WebhookConfig(url=f"http://{host}:{port}/hook", secret="gate-secret"))
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message == LOOPBACK_REFUSED[host]
    assert raised.value.permanent is True
    assert webhook_receiver.requests == []


def test_a_kept_session_still_checks_each_new_host_it_dials(allowed_networks, webhook_receiver):
    # A delivery thread keeps its session, and the connection to an allowed host, across attempts: another host is
    # its own connection, dialled and checked as ever.
    allowed_networks("127.0.0.1/32")
    port = webhook_receiver.url.rsplit(":", 1)[1]
    image = make_staged_image(noisy_jpeg((160, 120)))

    def kept_backend(host: str) -> WebhookBackend:
        config = WebhookConfig(url=f"http://{host}:{port}/hook", secret="gate-secret")
        return WebhookBackend(config, AttemptContext(keep_connections=True))

    kept_backend("127.0.0.1").deliver(image, rendered_path(image))
    with pytest.raises(DeliveryError) as raised:
        kept_backend("127.0.0.2").deliver(image, rendered_path(image))

    assert raised.value.message == LOOPBACK_REFUSED["127.0.0.1"].replace("127.0.0.1", "127.0.0.2")
    assert raised.value.permanent is True
    assert (len(webhook_receiver.requests), webhook_receiver.connections) == (1, 1)


def test_an_s3_endpoint_on_loopback_fails_permanently_as_refused_host(loopback_refused, moto_server):
    bucket = moto_server.create_bucket()
    backend = S3Backend(S3Config.model_validate(moto_server.destination_config(bucket)))
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message == LOOPBACK_REFUSED["127.0.0.1"]
    assert raised.value.permanent is True
    assert moto_server.objects(bucket) == {}


def test_a_refused_host_fails_the_delivery_at_once_with_a_clear_last_error(
    api_client, owner, webhook_receiver, settings
):
    destination = create_destination(
        api_client, owner, "webhook", {"url": f"{webhook_receiver.url}/hook", "secret": "gate-secret"}
    )
    session = create_session(api_client, owner, [destination["id"]])
    image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    settings.APERTUR_ALLOWED_PRIVATE_NETWORKS = []
    outbound._allowed_private_networks.cache_clear()

    delivery_execute(delivery_id=str(Delivery.objects.get(image_id=image["id"]).pk))

    delivery = Delivery.objects.get(image_id=image["id"])
    assert delivery.status == "failed"
    assert delivery.attempts == 1
    assert delivery.last_error == LOOPBACK_REFUSED["127.0.0.1"]
    listed = api_client.get(f"/api/v1/projects/{owner.project.pk}/destinations", **owner.auth).json()
    assert listed[0]["lastError"] == delivery.last_error
    assert webhook_receiver.requests == []


@pytest.mark.parametrize("kind", ["webhook", "s3"])
def test_a_host_name_that_resolves_to_a_refused_address_is_reported_without_the_address(
    api_client, owner, allowed_networks, webhook_receiver, moto_server, kind
):
    if kind == "webhook":
        config = {"url": webhook_receiver.url.replace("127.0.0.1", "localhost") + "/hook", "secret": "gate-secret"}
    else:
        endpoint = moto_server.endpoint.replace("127.0.0.1", "localhost")
        config = moto_server.destination_config(moto_server.create_bucket(), endpoint=endpoint)
    destination = create_destination(api_client, owner, kind, config)
    session = create_session(api_client, owner, [destination["id"]])
    image = upload_image(api_client, session["id"], noisy_jpeg((160, 120)))
    allowed_networks()  # from here on, loopback is refused

    tested = api_client.post(f"/api/v1/projects/{owner.project.pk}/destinations/{destination['id']}/test", **owner.auth)
    delivery_execute(delivery_id=str(Delivery.objects.get(image_id=image["id"]).pk))

    message = LOOPBACK_REFUSED["localhost"]
    assert tested.json() == {"success": False, "message": "Test delivery failed.", "error": message}
    delivery = Delivery.objects.get(image_id=image["id"])
    assert (delivery.status, delivery.last_error) == ("failed", message)
    listed = api_client.get(f"/api/v1/projects/{owner.project.pk}/destinations", **owner.auth)
    assert listed.json()[0]["lastError"] == message
    assert b"127.0.0.1" not in tested.content + listed.content
    assert webhook_receiver.requests == []


def test_a_refused_address_is_never_dialled_so_open_and_closed_ports_look_the_same(loopback_refused):
    """Checking only after connecting would tell a refused destination which private ports are open."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        messages = []
        for port in (listening.getsockname()[1], closed_port):
            backend = WebhookBackend(WebhookConfig(url=f"http://127.0.0.1:{port}/", secret="long-enough-secret"))
            with pytest.raises(DeliveryError) as refused:
                backend.deliver(make_staged_image(b"x"), "x")
            messages.append(refused.value.message)
        # A TCP connect completes into the listen backlog before deliver() returns, so an empty backlog now
        # means nothing ever dialled the open port: no need to wait for one.
        listening.setblocking(False)
        with pytest.raises(BlockingIOError):
            listening.accept()
    finally:
        listening.close()
    assert messages == [LOOPBACK_REFUSED["127.0.0.1"]] * 2


# --- host names survive the check: TLS and the Host header use the name, not the dialled address ------------


@pytest.fixture
def https_receiver(tmp_path, allowed_networks):
    allowed_networks("127.0.0.0/8", "::1/128")
    receiver = HTTPSReceiver(tmp_path)
    yield receiver
    receiver.stop()


def test_an_https_webhook_host_is_verified_by_its_name_on_every_request(https_receiver):
    session = outbound_session()

    statuses = [
        session.post(f"{https_receiver.url}/hook", data=b"x", verify=str(https_receiver.certificate)).status_code
        for _ in range(2)
    ]

    assert statuses == [200, 200]
    host = https_receiver.url.removeprefix("https://")
    assert https_receiver.requests == [("POST", "/hook", host), ("POST", "/hook", host)]


def test_an_https_s3_endpoint_is_verified_by_its_name(https_receiver, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", str(https_receiver.certificate))
    backend = S3Backend(S3Config(endpoint=https_receiver.url, bucket="media", accessKey="key-id", secretKey="secret"))

    receipt = backend.deliver(make_staged_image(b"image bytes"), "photo.jpg")

    assert receipt.remote_reference == "s3://media/photo.jpg"
    assert https_receiver.requests == [("PUT", "/media/photo.jpg", https_receiver.url.removeprefix("https://"))]


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example.com", ".example.com"])
def test_a_host_name_no_lookup_can_take_is_refused_as_not_valid(host):
    with pytest.raises(HostNotAllowed, match="is not a valid host name"):
        ensure_host_allowed(host, 443)


def test_a_webhook_to_an_invalid_host_name_fails_permanently():
    backend = WebhookBackend(WebhookConfig(url="http://a..b/hook", secret="gate-secret"))
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message == "refused host: a..b is not a valid host name"
    assert raised.value.permanent is True
