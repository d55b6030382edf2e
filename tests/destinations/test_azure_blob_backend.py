"""The azure_blob destination against a real local Azurite, with an account key and with SAS tokens."""

import hashlib
import logging
import os
import re
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)

from apertur.deadlines import Deadline
from destinations.backends.azure_blob import AzureBlobBackend, AzureBlobConfig, parse_connection_string
from destinations.backends.base import AttemptContext, DeliveryError
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    UserHostContract,
    make_staged_image,
    rendered_path,
)
from tests.destinations.helpers import FixedAnswerServer
from tests.destinations.test_destinations_api import assert_no_secret, assert_validation_error, destinations_url
from tests.factories import noisy_jpeg
from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY, WRONG_KEY, AzuriteServer, BreakingProxy
from tests.servers.s3 import free_port
from tests.servers.tarpit import TarpitServer

# The documented defaults (docs/configuration.md): one Put Blob up to 4 MiB, blocks of 4 MiB above.
FOUR_MIB = 4 * 1024 * 1024


def account_sas(*, key: str = ACCOUNT_KEY, permission=None, expiry: datetime | None = None) -> str:
    return generate_account_sas(
        ACCOUNT,
        key,
        ResourceTypes(object=True),
        permission or AccountSasPermissions(write=True, create=True),
        expiry=expiry or datetime.now(UTC) + timedelta(hours=1),
    )


def container_sas(container: str, *, permission=None, expiry: datetime | None = None) -> str:
    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=ACCOUNT_KEY,
        permission=permission or ContainerSasPermissions(write=True, create=True),
        expiry=expiry or datetime.now(UTC) + timedelta(hours=1),
    )


def azure_backend(connection_string: str, container: str, **config) -> AzureBlobBackend:
    return AzureBlobBackend(
        AzureBlobConfig.model_validate({"connectionString": connection_string, "container": container, **config})
    )


def md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


@pytest.fixture
def small_blocks(settings):
    """Blocks above 100 kB, of 64 KiB: a few hundred kilobytes exercise the staged path."""
    settings.APERTUR_AZURE_BLOCK_THRESHOLD_BYTES = 100_000
    settings.APERTUR_AZURE_BLOCK_SIZE_BYTES = 64 * 1024
    return settings


@pytest.fixture
def proxies():
    """Breaking proxies in front of Azurite, stopped after the test."""
    started: list[BreakingProxy] = []

    def start(server: AzuriteServer, **breaks) -> BreakingProxy:
        started.append(BreakingProxy(server.port, **breaks))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


class AzuriteTarget(ContractTarget):
    def __init__(self, server: AzuriteServer, credential: str) -> None:
        self.server = server
        self.credential = credential  # "key" or "sas"
        self.container = server.create_container()
        self.proxy: BreakingProxy | None = None

    def connection_string(self, *, key: str = ACCOUNT_KEY, endpoint: str | None = None) -> str:
        if self.credential == "sas":
            return self.server.sas_connection_string(account_sas(key=key), endpoint=endpoint)
        return self.server.connection_string(key=key, endpoint=endpoint)

    def backend(self) -> AzureBlobBackend:
        return azure_backend(self.connection_string(), self.container)

    def failing_backend(self) -> AzureBlobBackend:
        # Every request reaches Azurite with half its body, then the connection drops: a transfer cut half-way.
        if self.proxy is None:
            self.proxy = BreakingProxy(self.server.port, cut_all=True)
        return azure_backend(self.connection_string(endpoint=self.proxy.endpoint), self.container)

    def backend_with_refused_credentials(self) -> AzureBlobBackend:
        return azure_backend(self.connection_string(key=WRONG_KEY), self.container)

    def delivered(self) -> dict[str, bytes]:
        return self.server.blobs(self.container)

    def location(self, image, path: str) -> str:
        return path

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()


class TestAzureBlobBackendWithAccountKey(BackendContract, UserHostContract):
    @pytest.fixture
    def target(self, azurite_server):
        target = AzuriteTarget(azurite_server, "key")
        yield target
        target.stop()


class TestAzureBlobBackendWithSharedAccessSignature(BackendContract, UserHostContract):
    @pytest.fixture
    def target(self, azurite_server):
        target = AzuriteTarget(azurite_server, "sas")
        yield target
        target.stop()


# --- what the blob looks like -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "committed_blocks"),
    [(400_000, []), (100_000, [65536, 65536, 65536, 65536, 37856])],
    ids=["one put blob", "staged blocks"],
)
def test_the_blob_has_the_bytes_the_content_type_and_the_md5_of_the_image(
    azurite_server, settings, threshold, committed_blocks
):
    settings.APERTUR_AZURE_BLOCK_THRESHOLD_BYTES = threshold
    settings.APERTUR_AZURE_BLOCK_SIZE_BYTES = 64 * 1024
    data = os.urandom(300_000)
    container = azurite_server.create_container()
    image = make_staged_image(data, mime_type="image/webp", extension="webp")

    receipt = azure_backend(azurite_server.connection_string(), container).deliver(image, "in/photo.webp")

    blob = azurite_server.client().get_blob_client(container, "in/photo.webp")
    properties = blob.get_blob_properties()
    assert blob.download_blob().readall() == data
    assert properties.size == len(data)
    assert properties.content_settings.content_type == "image/webp"
    assert properties.content_settings.content_md5 == md5(data)
    committed, _ = blob.get_block_list()
    assert [block.size for block in committed] == committed_blocks
    assert receipt.remote_reference == f"{azurite_server.endpoint}/{container}/in/photo.webp"


def test_blob_names_with_spaces_plus_signs_and_non_ascii_characters_are_signed_and_stored(azurite_server):
    data = noisy_jpeg((160, 120))
    container = azurite_server.create_container()
    name = "albums/été 2026/照片 +1 (copy)#2.jpg"

    azure_backend(azurite_server.connection_string(), container).deliver(make_staged_image(data), name)

    assert azurite_server.blobs(container) == {name: data}


def test_the_path_template_names_the_blob(azurite_server):
    container = azurite_server.create_container()
    template = "{project_id}/{date}/{tag:order}/{name}_{index}.{ext}"
    backend = azure_backend(azurite_server.connection_string(), container, pathTemplate=template)
    image = make_staged_image(noisy_jpeg((160, 120)), filename="Holiday shot.jpeg")
    path = backend.remote_path(image)

    backend.deliver(image, path)

    assert path == f"{image.project_id}/2026-11-28/A-17/Holiday shot_3.jpg"
    assert list(azurite_server.blobs(container)) == [path]


def test_the_test_image_is_a_png_blob_under_apertur_test(azurite_server):
    container = azurite_server.create_container()

    result = azure_backend(azurite_server.connection_string(), container).check()

    assert result.success is True, result.error
    [name] = azurite_server.blobs(container)
    assert name.startswith("apertur-test/") and name.endswith(".png")
    properties = azurite_server.client().get_blob_client(container, name).get_blob_properties()
    assert properties.content_settings.content_type == "image/png"


# --- single put or blocks, and memory -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "operations"),
    [(FOUR_MIB, ["put blob"]), (FOUR_MIB + 1, ["put block", "put block", "put block list"])],
    ids=["4 MiB", "4 MiB + 1"],
)
def test_an_image_up_to_the_default_threshold_is_one_put_blob_and_a_larger_one_is_staged_in_blocks(
    azurite_server, proxies, size, operations
):
    data = bytes(size)  # zeros cost nothing to make; the backend streams whatever bytes it is given
    container = azurite_server.create_container()
    proxy = proxies(azurite_server)

    azure_backend(azurite_server.connection_string(endpoint=proxy.endpoint), container).deliver(
        make_staged_image(data), "edge.jpg"
    )

    assert [operation_of(request) for request in proxy.requests] == operations
    blob = azurite_server.client().get_blob_client(container, "edge.jpg")
    assert blob.get_blob_properties().content_settings.content_md5 == md5(data)
    assert [block.size for block in blob.get_block_list()[0]] == ([] if size == FOUR_MIB else [FOUR_MIB, 1])


def operation_of(request_line: str) -> str:
    method, target, _ = request_line.split(" ")
    if "comp=blocklist" in target:
        return f"{method.lower()} block list"
    if "comp=block" in target:
        return f"{method.lower()} block"
    return f"{method.lower()} blob"


def test_a_20_mb_image_is_streamed_in_blocks_without_being_held_in_memory(azurite_server, tmp_path):
    size = 20 * 1024 * 1024
    source = tmp_path / "large.jpg"
    with source.open("wb") as file:
        for _ in range(20):
            file.write(os.urandom(1024 * 1024))
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    whole_md5 = md5(data)
    del data
    container = azurite_server.create_container()
    image = make_staged_image(b"", size_bytes=size, sha256=digest, opener=lambda: source.open("rb"))
    backend = azure_backend(azurite_server.connection_string(), container)

    tracemalloc.start()
    try:
        backend.deliver(image, "large.jpg")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte image"
    blob = azurite_server.client().get_blob_client(container, "large.jpg")
    assert blob.get_blob_properties().content_settings.content_md5 == whole_md5
    assert hashlib.sha256(blob.download_blob().readall()).hexdigest() == digest


# --- transfers cut or corrupted -----------------------------------------------------------------------


def test_an_upload_cut_half_way_through_its_blocks_leaves_no_blob_and_a_retry_leaves_one_whole_blob(
    azurite_server, small_blocks, proxies
):
    data = os.urandom(300_000)  # five blocks, then the block list
    container = azurite_server.create_container()
    proxy = proxies(azurite_server, cut={3})
    backend = azure_backend(azurite_server.connection_string(endpoint=proxy.endpoint), container)
    image = make_staged_image(data)
    path = rendered_path(image)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert raised.value.message.startswith("Azure Blob endpoint unreachable or connection lost: ")
    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    assert azurite_server.blobs(container) == {}
    blob = azurite_server.client().get_blob_client(container, path)
    _, left_uncommitted = blob.get_block_list("uncommitted")
    assert len(left_uncommitted) == 2  # blocks 1 and 2 arrived; the third was cut

    backend.deliver(replace(image, attempt=2), path)

    assert azurite_server.blobs(container) == {path: data}
    committed, uncommitted = blob.get_block_list("all")
    assert len(committed) == 5 and uncommitted == []
    assert not {block.id for block in committed} & {block.id for block in left_uncommitted}
    assert blob.get_blob_properties().content_settings.content_md5 == md5(data)


def test_a_replacement_cut_half_way_leaves_the_previous_blob_whole(azurite_server, proxies):
    container = azurite_server.create_container()
    first, replacement = noisy_jpeg((320, 240)), noisy_jpeg((320, 240))
    azure_backend(azurite_server.connection_string(), container).deliver(make_staged_image(first), "photo.jpg")
    proxy = proxies(azurite_server, cut_all=True)

    with pytest.raises(DeliveryError):
        azure_backend(azurite_server.connection_string(endpoint=proxy.endpoint), container).deliver(
            make_staged_image(replacement), "photo.jpg"
        )

    assert azurite_server.blobs(container) == {"photo.jpg": first}


@pytest.mark.parametrize(
    ("size", "corrupted_request"), [(50_000, 1), (300_000, 2)], ids=["one put blob", "second block"]
)
def test_bytes_corrupted_on_the_way_are_refused_by_their_md5_and_the_retry_delivers(
    azurite_server, small_blocks, proxies, size, corrupted_request
):
    data = os.urandom(size)
    container = azurite_server.create_container()
    proxy = proxies(azurite_server, corrupt={corrupted_request})
    backend = azure_backend(azurite_server.connection_string(endpoint=proxy.endpoint), container)
    image = make_staged_image(data)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, "photo.jpg")

    # Azure answers Md5Mismatch; Azurite 3.35 answers InvalidOperation, "Provided contentMD5 doesn't match."
    assert raised.value.message.startswith("Azure Blob InvalidOperation (HTTP 400): Provided contentMD5")
    assert raised.value.http_status == 400
    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    assert azurite_server.blobs(container) == {}
    backend.deliver(replace(image, attempt=2), "photo.jpg")
    assert azurite_server.blobs(container) == {"photo.jpg": data}


# --- credentials and containers -----------------------------------------------------------------------


def test_a_wrong_account_key_is_refused_with_403_and_flags_reconnect(azurite_server):
    container = azurite_server.create_container()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        azure_backend(azurite_server.connection_string(key=WRONG_KEY), container).deliver(image, "photo.jpg")

    # Azure says AuthenticationFailed; Azurite 3.35 says AuthorizationFailure. Both are a refused credential.
    assert raised.value.message.startswith("credentials refused: Azure Blob AuthorizationFailure (HTTP 403): Server")
    assert (raised.value.http_status, raised.value.needs_reconnect, raised.value.permanent) == (403, True, False)
    assert WRONG_KEY not in raised.value.message
    assert azurite_server.blobs(container) == {}


def test_a_container_sas_delivers(azurite_server):
    container = azurite_server.create_container()
    data = noisy_jpeg((160, 120))

    azure_backend(azurite_server.sas_connection_string(container_sas(container)), container).deliver(
        make_staged_image(data), "photo.jpg"
    )

    assert azurite_server.blobs(container) == {"photo.jpg": data}


def test_a_sas_with_a_leading_question_mark_as_the_portal_copies_it_delivers(azurite_server):
    container = azurite_server.create_container()
    connection_string = azurite_server.sas_connection_string("?" + container_sas(container))

    azure_backend(connection_string, container).deliver(make_staged_image(b"jpeg"), "photo.jpg")

    assert azurite_server.blobs(container) == {"photo.jpg": b"jpeg"}


@pytest.mark.parametrize(
    ("sas", "code"),
    [
        (
            lambda container: container_sas(container, permission=ContainerSasPermissions(read=True)),
            "AuthorizationPermissionMismatch",
        ),
        (
            lambda container: container_sas(container, expiry=datetime.now(UTC) - timedelta(minutes=5)),
            "AuthorizationFailure",
        ),
        (lambda container: account_sas(key=WRONG_KEY), "AuthorizationFailure"),
    ],
    ids=["read-only", "expired", "signed with another key"],
)
def test_a_sas_the_service_refuses_flags_reconnect(azurite_server, small_blocks, sas, code):
    container = azurite_server.create_container()
    token = sas(container)
    image = make_staged_image(os.urandom(200_000))  # in blocks: the first Put Block is refused

    with pytest.raises(DeliveryError) as raised:
        azure_backend(azurite_server.sas_connection_string(token), container).deliver(image, "photo.jpg")

    assert raised.value.message.startswith(f"credentials refused: Azure Blob {code} (HTTP 403): ")
    assert (raised.value.http_status, raised.value.needs_reconnect) == (403, True)
    assert token not in raised.value.message
    assert azurite_server.blobs(container) == {}


@pytest.mark.parametrize("size", [50_000, 300_000], ids=["one put blob", "staged blocks"])
def test_a_missing_container_is_a_permanent_error_that_names_it(azurite_server, small_blocks, size):
    image = make_staged_image(os.urandom(size))

    with pytest.raises(DeliveryError) as raised:
        azure_backend(azurite_server.connection_string(), "no-such-container").deliver(image, "photo.jpg")

    assert raised.value.message == (
        "the container 'no-such-container' does not exist in this storage account (ContainerNotFound); "
        "create it or change the destination's container"
    )
    assert (raised.value.http_status, raised.value.permanent, raised.value.needs_reconnect) == (404, True, False)


# --- HTTPS ---------------------------------------------------------------------------------------------


def test_an_https_endpoint_behind_a_private_ca_is_verified_against_the_outbound_ca_bundle(azurite_tls_server, settings):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(azurite_tls_server.certificate)
    container = azurite_tls_server.create_container()
    data = noisy_jpeg((160, 120))

    receipt = azure_backend(azurite_tls_server.connection_string(), container).deliver(
        make_staged_image(data), "photo.jpg"
    )

    assert azurite_tls_server.blobs(container) == {"photo.jpg": data}
    assert receipt.remote_reference == f"https://localhost:{azurite_tls_server.port}/{ACCOUNT}/{container}/photo.jpg"


def test_an_https_endpoint_whose_certificate_is_not_trusted_gets_nothing(azurite_tls_server, settings):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = ""
    container = azurite_tls_server.create_container()

    with pytest.raises(DeliveryError) as raised:
        azure_backend(azurite_tls_server.connection_string(), container).deliver(
            make_staged_image(noisy_jpeg((160, 120))), "photo.jpg"
        )

    assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message
    assert azurite_tls_server.blobs(container) == {}


# --- one try, no redirects, the deadline --------------------------------------------------------------


def key_backend_for(url: str) -> AzureBlobBackend:
    return azure_backend(f"AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={url}/{ACCOUNT}", "media")


def test_a_server_error_is_one_request_reported_with_its_status():
    endpoint = FixedAnswerServer(500)
    try:
        with pytest.raises(DeliveryError) as raised:
            key_backend_for(endpoint.url).deliver(make_staged_image(noisy_jpeg((160, 120))), "photo.jpg")
    finally:
        endpoint.stop()

    # Retries belong to the delivery schedule: the SDK must not retry on its own.
    assert endpoint.requests == [f"PUT /{ACCOUNT}/media/photo.jpg"]
    assert raised.value.message == "Azure Blob Internal Server Error (HTTP 500)"
    assert (raised.value.http_status, raised.value.permanent, raised.value.needs_reconnect) == (500, False, False)


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirect_is_not_followed_and_is_a_failure_that_will_be_retried(status):
    elsewhere = FixedAnswerServer(201)
    endpoint = FixedAnswerServer(status, {"Location": f"{elsewhere.url}/{ACCOUNT}/media/photo.jpg"})
    try:
        with pytest.raises(DeliveryError) as raised:
            key_backend_for(endpoint.url).deliver(make_staged_image(noisy_jpeg((160, 120))), "photo.jpg")
    finally:
        endpoint.stop()
        elsewhere.stop()

    assert endpoint.requests == [f"PUT /{ACCOUNT}/media/photo.jpg"]
    assert elsewhere.requests == []
    assert raised.value.message == (
        f"the Azure Blob endpoint redirected (HTTP {status}), and redirects are not followed; "
        "check BlobEndpoint in the connection string"
    )
    assert (raised.value.http_status, raised.value.permanent) == (status, False)


def test_an_unreachable_endpoint_is_a_failure_that_will_be_retried_and_shows_no_signature():
    token = account_sas()
    url = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    backend = azure_backend(f"BlobEndpoint={url};SharedAccessSignature={token}", "media")

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(make_staged_image(noisy_jpeg((160, 120))), "photo.jpg")

    assert raised.value.message.startswith("Azure Blob endpoint unreachable or connection lost:")
    assert "Connection refused" in raised.value.message
    assert raised.value.permanent is False
    signature = token.split("sig=")[1]
    assert signature not in raised.value.message and unquote(signature) not in raised.value.message


def test_an_endpoint_that_answers_slowly_is_cut_at_the_attempt_deadline():
    # The status line arrives one byte every 0.3 s: no read timeout fires, only the attempt's deadline ends it.
    server = TarpitServer(mode="drip", interval=0.3)
    backend = key_backend_for(server.url)
    started = time.monotonic()
    try:
        with Deadline(1.0) as deadline:
            backend.context = AttemptContext(deadline=deadline)
            with pytest.raises(DeliveryError) as raised:
                backend.deliver(make_staged_image(noisy_jpeg((160, 120))), "photo.jpg")
    finally:
        server.stop()
    elapsed = time.monotonic() - started

    assert deadline.expired
    assert elapsed < 5, (elapsed, raised.value.message)
    assert raised.value.permanent is False


def test_no_secret_reaches_the_logs_even_at_debug_level(azurite_server, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="azure")
    container = azurite_server.create_container()
    token = account_sas()
    image = make_staged_image(noisy_jpeg((160, 120)))

    azure_backend(azurite_server.sas_connection_string(token), container).deliver(image, "photo.jpg")
    with pytest.raises(DeliveryError):
        azure_backend(azurite_server.connection_string(key=WRONG_KEY), container).deliver(image, "photo.jpg")

    assert "Request URL" in caplog.text  # the SDK did log its requests
    signature = token.split("sig=")[1]
    for secret in (signature, unquote(signature), ACCOUNT_KEY, WRONG_KEY):
        assert secret not in caplog.text


# --- connection strings and config --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection_string", "endpoint"),
    [
        (
            f"DefaultEndpointsProtocol=https;AccountName=photos;AccountKey={ACCOUNT_KEY}",
            "https://photos.blob.core.windows.net",
        ),
        (f"AccountName=photos;AccountKey={ACCOUNT_KEY}", "https://photos.blob.core.windows.net"),
        (
            f"DefaultEndpointsProtocol=https;AccountName=photos;AccountKey={ACCOUNT_KEY};"
            "EndpointSuffix=core.chinacloudapi.cn;",
            "https://photos.blob.core.chinacloudapi.cn",
        ),
        (
            f"defaultendpointsprotocol=http;accountname=photos;accountkey={ACCOUNT_KEY};"
            "QueueEndpoint=https://photos.queue.core.windows.net/",
            "http://photos.blob.core.windows.net",
        ),
        (
            "BlobEndpoint=https://cdn.example.com/;SharedAccessSignature=sv=2026-10-06&sig=abc",
            "https://cdn.example.com",
        ),
    ],
    ids=["https", "no protocol", "sovereign cloud suffix", "keys in any case, other endpoints", "blob endpoint"],
)
def test_the_blob_endpoint_comes_from_the_connection_string(connection_string, endpoint):
    backend = azure_backend(connection_string, "media")

    assert parse_connection_string(connection_string).endpoint == endpoint
    # What the SDK will call, built without a request being made.
    assert backend._blob_client(parse_connection_string(connection_string), "a/b.jpg").url.startswith(
        f"{endpoint}/media/a/b.jpg"
    )


@pytest.mark.parametrize(
    ("connection_string", "message"),
    [
        ("not a connection string at all", "must be an Azure Storage connection string"),
        ("AccountName=photos;AccountKey=", "must be an Azure Storage connection string"),
        ("AccountName=photos", "needs a credential: AccountKey (with AccountName) or SharedAccessSignature"),
        ("AccountName=photos;AccountKey=not-base64!secret", "AccountKey must be the base64 key"),
        (f"AccountName=Photos_1;AccountKey={ACCOUNT_KEY}", "AccountName must be 3 to 24 lowercase letters"),
        (f"AccountKey={ACCOUNT_KEY};BlobEndpoint=https://x.example.com", "an AccountKey needs the AccountName"),
        ("SharedAccessSignature=sv=1&sig=secret", "needs AccountName (or a BlobEndpoint)"),
        ("BlobEndpoint=https://x.example.com;SharedAccessSignature=secret", "must be a SAS token"),
        ("BlobEndpoint=ftp://x.example.com;SharedAccessSignature=sv=1&sig=secret", "BlobEndpoint must be an http"),
        ("BlobEndpoint=https://x.example.com:99999;SharedAccessSignature=sig=secret", "BlobEndpoint must be an http"),
        ("BlobEndpoint=https://u:secret@x.example.com;SharedAccessSignature=sig=s", "must not hold a user name"),
        (f"DefaultEndpointsProtocol=gopher;AccountName=photos;AccountKey={ACCOUNT_KEY}", "must be https or http"),
        (f"AccountName=photos;AccountKey={ACCOUNT_KEY};EndpointSuffix=a/b", "EndpointSuffix must be a host name"),
        ("UseDevelopmentStorage=true", "UseDevelopmentStorage is not supported"),
    ],
)
def test_a_connection_string_that_cannot_be_used_is_refused_without_being_repeated(connection_string, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        AzureBlobConfig.model_validate({"connectionString": connection_string, "container": "media"})

    assert raised.value.errors()[0]["loc"] == ("connectionString",)
    assert "secret" not in str(raised.value) and ACCOUNT_KEY not in str(raised.value)
    assert connection_string not in str(raised.value)


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"container": "Media"}, "container", "must be a container name"),
        ({"container": "ab"}, "container", "must be a container name"),
        ({"container": "my--photos"}, "container", "must be a container name"),
        ({"container": "-photos"}, "container", "must be a container name"),
        ({"container": "a" * 64}, "container", "must be a container name"),
        ({"container": "$logs"}, "container", "must be a container name"),
        ({"pathTemplate": "{session_id}/{nope}"}, "pathTemplate", "unknown variable {nope}"),
        ({"blobEndpoint": "https://x"}, "blobEndpoint", "Extra inputs are not permitted"),
    ],
)
def test_config_is_validated_strictly(config, field, message):
    with pytest.raises(ValueError, match=message) as raised:
        AzureBlobConfig.model_validate(
            {"connectionString": f"AccountName=photos;AccountKey={ACCOUNT_KEY}", "container": "media", **config}
        )
    assert raised.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("container", ["abc", "a-b-c", "photos2026", "a" * 63, "$root", "$web"])
def test_container_names_azure_allows_are_accepted(container):
    config = AzureBlobConfig.model_validate(
        {"connectionString": f"AccountName=photos;AccountKey={ACCOUNT_KEY}", "container": container}
    )

    assert config.container == container


# --- through the API ----------------------------------------------------------------------------------


def test_the_api_creates_an_azure_blob_destination_with_its_connection_string_masked_and_tests_it(
    api_client, owner, azurite_server
):
    container = azurite_server.create_container()
    config = {"connectionString": azurite_server.connection_string(), "container": container}

    created = api_client.post(
        destinations_url(owner),
        {"type": "azure_blob", "name": "Archive", "config": config},
        format="json",
        **owner.auth,
    )
    assert created.status_code == 201, created.content
    destination = created.json()
    tested = api_client.post(destinations_url(owner, destination["id"], "test"), format="json", **owner.auth)

    assert destination["config"] == {"connectionString": "••••nt1;", "container": container}
    assert_no_secret(created, ACCOUNT_KEY)
    assert tested.status_code == 200, tested.content
    assert tested.json()["success"] is True, tested.json()
    assert tested.json()["message"].startswith(f"Test image delivered to {azurite_server.endpoint}/{container}/")
    [test_blob] = azurite_server.blobs(container)
    assert test_blob.startswith("apertur-test/") and test_blob.endswith(".png")


def test_the_api_refuses_a_bad_connection_string_without_repeating_it(api_client, owner):
    garbage = f"AccountName=photos;AccountKey={ACCOUNT_KEY}!;"

    created = api_client.post(
        destinations_url(owner),
        {"type": "azure_blob", "name": "Archive", "config": {"connectionString": garbage, "container": "media"}},
        format="json",
        **owner.auth,
    )

    assert_validation_error(
        created,
        {"config.connectionString": ["AccountKey must be the base64 key shown on the account's Access keys page"]},
    )
    assert_no_secret(created, ACCOUNT_KEY, garbage)


def test_the_api_keeps_the_connection_string_when_a_patch_omits_it_and_refuses_a_bad_container(
    api_client, owner, azurite_server
):
    container = azurite_server.create_container()
    destination = api_client.post(
        destinations_url(owner),
        {
            "type": "azure_blob",
            "name": "Archive",
            "config": {"connectionString": azurite_server.connection_string(), "container": "old-container"},
        },
        format="json",
        **owner.auth,
    ).json()

    refused = api_client.patch(
        destinations_url(owner, destination["id"]), {"config": {"container": "Bad_Name"}}, format="json", **owner.auth
    )
    kept = api_client.patch(
        destinations_url(owner, destination["id"]), {"config": {"container": container}}, format="json", **owner.auth
    )
    tested = api_client.post(destinations_url(owner, destination["id"], "test"), format="json", **owner.auth)

    assert_validation_error(
        refused,
        {
            "config.container": [
                "must be a container name: 3 to 63 lowercase letters, digits and single hyphens, "
                "starting and ending with a letter or digit"
            ]
        },
    )
    assert kept.status_code == 200, kept.content
    assert kept.json()["config"] == {"connectionString": "••••nt1;", "container": container}
    assert tested.json()["success"] is True, tested.json()


def test_the_api_test_of_a_missing_container_reports_it(api_client, owner, azurite_server):
    destination = api_client.post(
        destinations_url(owner),
        {
            "type": "azure_blob",
            "name": "Archive",
            "config": {"connectionString": azurite_server.connection_string(), "container": "never-created"},
        },
        format="json",
        **owner.auth,
    ).json()

    tested = api_client.post(destinations_url(owner, destination["id"], "test"), format="json", **owner.auth)
    shown = api_client.get(destinations_url(owner), **owner.auth).json()

    assert tested.status_code == 200, tested.content
    assert tested.json()["success"] is False
    assert tested.json()["status"] == 404
    assert "'never-created' does not exist" in tested.json()["error"]
    assert shown[0]["lastError"] == tested.json()["error"]
    assert shown[0]["needsReconnect"] is False


def test_the_api_refuses_a_blob_endpoint_whose_host_no_lookup_can_take(api_client, owner):
    connection_string = f"BlobEndpoint=http://a..b/photos;AccountName=photos;AccountKey={ACCOUNT_KEY}"
    response = api_client.post(
        destinations_url(owner),
        {
            "type": "azure_blob",
            "name": "Archive",
            "config": {"connectionString": connection_string, "container": "media"},
        },
        format="json",
        **owner.auth,
    )

    assert_validation_error(
        response, {"config.connectionString": ["BlobEndpoint's host a..b is not a valid host name"]}
    )


@pytest.mark.parametrize(("template", "folder"), [("{tag:album}", ""), ("photos/{tag:album}", "photos/")])
def test_a_blob_name_that_renders_empty_becomes_the_image_id(azurite_server, template, folder):
    container = azurite_server.create_container()
    backend = azure_backend(azurite_server.connection_string(), container, pathTemplate=template)
    image = make_staged_image(noisy_jpeg((160, 120)), tags=[], extension="jpg")
    path = backend.remote_path(image)

    backend.deliver(image, path)

    assert path == f"{folder}{image.image_id}.jpg"
    assert list(azurite_server.blobs(container)) == [path]
