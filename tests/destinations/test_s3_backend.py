"""The s3 destination against real local S3 servers: moto (fast) and SeaweedFS (real signatures and checksums)."""

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from destinations.backends import s3 as s3_module
from destinations.backends.base import DeliveryError
from destinations.backends.s3 import S3Backend, S3Config
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    UserHostContract,
    make_staged_image,
    rendered_path,
)
from tests.destinations.helpers import FixedAnswerServer
from tests.factories import noisy_jpeg
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, S3Server, free_port

# The contract, not the implementation's constant: one PUT up to 16 MiB, multipart above (docs/api.md "Destinations").
SIXTEEN_MIB = 16 * 1024 * 1024


def s3_backend(server: S3Server, bucket: str, **config) -> S3Backend:
    return S3Backend(S3Config.model_validate(server.destination_config(bucket, **config)))


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class S3Target(ContractTarget):
    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.create_bucket()

    def backend(self) -> S3Backend:
        return s3_backend(self.server, self.bucket)

    def failing_backend(self) -> S3Backend:
        return s3_backend(self.server, f"{self.bucket}-missing")

    def backend_with_refused_credentials(self) -> S3Backend:
        return s3_backend(self.server, self.bucket, secretKey="not-the-secret-key")

    def delivered(self) -> dict[str, bytes]:
        return self.server.objects(self.bucket)

    def forget_connections(self) -> None:
        s3_module._thread_resources.by_key = None

    def location(self, image, path: str) -> str:
        return path


class TestS3BackendOnMoto(BackendContract, UserHostContract):
    # moto accepts any credentials, so this contract case runs on SeaweedFS (below) only.
    test_reports_refused_credentials_as_needs_reconnect = None

    @pytest.fixture
    def target(self, moto_server) -> S3Target:
        return S3Target(moto_server)


class TestS3BackendOnSeaweedFS(BackendContract, UserHostContract):
    @pytest.fixture
    def target(self, seaweedfs_server) -> S3Target:
        return S3Target(seaweedfs_server)


@pytest.fixture(params=["moto", "seaweedfs"])
def s3_server(request) -> S3Server:
    return request.getfixturevalue(f"{request.param}_server")


def test_object_has_the_bytes_the_content_type_and_a_sha256_checksum(s3_server):
    data = noisy_jpeg()
    image = make_staged_image(data)
    bucket = s3_server.create_bucket()

    receipt = s3_backend(s3_server, bucket).deliver(image, "in/photo.jpg")

    stored = s3_server.client().get_object(Bucket=bucket, Key="in/photo.jpg", ChecksumMode="ENABLED")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/jpeg"
    assert stored["ContentLength"] == len(data)
    # SeaweedFS verifies the checksum it is sent (a wrong one is BadDigest); both servers keep it.
    assert stored["ChecksumSHA256"] == sha256_base64(data)
    assert receipt.remote_reference == f"s3://{bucket}/in/photo.jpg"


def test_custom_headers_are_applied_to_the_object(s3_server):
    bucket = s3_server.create_bucket()
    headers = {
        "Cache-Control": "public, max-age=86400",
        "Content-Disposition": "inline",
        "x-amz-meta-foo": "bar",
        "X-Amz-Meta-Shot-By": "desk 4",
        "x-amz-storage-class": "STANDARD_IA",
    }

    s3_backend(s3_server, bucket, customHeaders=headers).deliver(make_staged_image(noisy_jpeg()), "photo.jpg")

    stored = s3_server.client().head_object(Bucket=bucket, Key="photo.jpg")
    assert stored["CacheControl"] == "public, max-age=86400"
    assert stored["ContentDisposition"] == "inline"
    assert stored["Metadata"] == {"foo": "bar", "shot-by": "desk 4"}
    assert stored["StorageClass"] == "STANDARD_IA"
    assert stored["ContentType"] == "image/jpeg"


def test_path_template_with_every_variable_renders_the_object_key(moto_server):
    template = (
        "{project_id}/{date}/{year}-{month}-{day}/{timestamp}/{tag:order}/{tag:absent}/"
        "{session_id}/{index}_{image_id}_{name}.{ext}/{filename}"
    )
    bucket = moto_server.create_bucket()
    image = make_staged_image(
        noisy_jpeg((160, 120)),
        filename="Holiday shot.jpeg",
        extension="jpg",
        tags=["order:A-17", "order:B-2", "team"],
        uploaded_at=datetime(2026, 3, 1, 4, 5, 6, tzinfo=UTC),
    )
    path = rendered_path(image, template)

    s3_backend(moto_server, bucket, pathTemplate=template).deliver(image, path)

    assert list(moto_server.objects(bucket)) == [
        f"{image.project_id}/2026-03-01/2026-03-01/1772337906/A-17/"
        f"{image.session_id}/3_{image.image_id}_Holiday shot.jpg/Holiday shot.jpeg"
    ]


def test_keys_with_spaces_plus_signs_and_non_ascii_characters_are_signed_and_stored(s3_server):
    data = noisy_jpeg((160, 120))
    bucket = s3_server.create_bucket()
    key = "albums/été 2026/照片 +1 (copy).jpg"

    s3_backend(s3_server, bucket).deliver(make_staged_image(data), key)

    assert s3_server.objects(bucket) == {key: data}


def test_an_image_above_16_mib_is_uploaded_in_parts_and_arrives_intact(s3_server):
    data = os.urandom(SIXTEEN_MIB + 1024 * 1024)
    bucket = s3_server.create_bucket()

    s3_backend(s3_server, bucket).deliver(make_staged_image(data), "large.jpg")

    client = s3_server.client()
    stored = client.head_object(Bucket=bucket, Key="large.jpg", ChecksumMode="ENABLED")
    assert stored["ETag"].strip('"').endswith("-2")  # two parts: 16 MiB + 1 MiB
    parts = [data[:SIXTEEN_MIB], data[SIXTEEN_MIB:]]
    composite = sha256_base64(b"".join(hashlib.sha256(part).digest() for part in parts))
    assert stored["ChecksumSHA256"].split("-")[0] == composite  # each part was sent with its SHA-256
    assert client.get_object(Bucket=bucket, Key="large.jpg")["Body"].read() == data


@contextmanager
def s3_calls(backend: S3Backend) -> Iterator[list[str]]:
    """The S3 operations `backend`'s client makes while the block runs, as botocore names them."""
    client = backend.storage(make_staged_image(b"")).connection.meta.client
    calls: list[str] = []

    def record(model, **kwargs) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.s3", record)
    try:
        yield calls
    finally:
        client.meta.events.unregister("before-call.s3", record)


@pytest.mark.parametrize(
    "size",
    [SIXTEEN_MIB - 1, SIXTEEN_MIB],
    ids=["16 MiB - 1", "16 MiB"],
)
def test_an_image_up_to_16_mib_is_one_put(moto_server, size):
    # Zeros cost nothing to make; the backend streams whatever bytes it is given.
    data = bytes(size)
    bucket = moto_server.create_bucket()
    backend = s3_backend(moto_server, bucket)

    with s3_calls(backend) as calls:
        backend.deliver(make_staged_image(data), "edge.jpg")

    assert calls == ["PutObject"]
    stored = moto_server.client().head_object(Bucket=bucket, Key="edge.jpg", ChecksumMode="ENABLED")
    assert (stored["ContentLength"], stored["ChecksumSHA256"]) == (size, sha256_base64(data))


def test_an_image_one_byte_above_16_mib_is_a_multipart_upload(moto_server):
    data = bytes(SIXTEEN_MIB + 1)
    bucket = moto_server.create_bucket()
    backend = s3_backend(moto_server, bucket)

    with s3_calls(backend) as calls:
        backend.deliver(make_staged_image(data), "edge.jpg")

    assert calls == ["CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"]
    stored = moto_server.client().head_object(Bucket=bucket, Key="edge.jpg")
    assert (stored["ContentLength"], stored["ETag"].strip('"')[-2:]) == (SIXTEEN_MIB + 1, "-2")


def test_a_wrong_secret_is_refused_by_seaweedfs_and_flags_reconnect(seaweedfs_server):
    bucket = seaweedfs_server.create_bucket()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        s3_backend(seaweedfs_server, bucket, secretKey="wrong-secret").deliver(image, "photo.jpg")

    assert raised.value.message.startswith("S3 SignatureDoesNotMatch:")
    assert raised.value.needs_reconnect is True
    assert raised.value.http_status == 403


def test_a_missing_bucket_is_a_failure_that_will_be_retried(s3_server):
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        s3_backend(s3_server, "no-such-bucket-here").deliver(image, "photo.jpg")

    assert raised.value.message.startswith("S3 NoSuchBucket:")
    assert raised.value.http_status == 404
    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)


def backend_for_endpoint(endpoint: str) -> S3Backend:
    return S3Backend(S3Config(endpoint=endpoint, bucket="media", accessKey=ACCESS_KEY, secretKey=SECRET_KEY))


def test_a_server_error_is_one_attempt_reported_with_its_status():
    endpoint = FixedAnswerServer(500)
    image = make_staged_image(noisy_jpeg((160, 120)))
    try:
        with pytest.raises(DeliveryError) as raised:
            backend_for_endpoint(endpoint.url).deliver(image, "photo.jpg")
    finally:
        endpoint.stop()

    assert raised.value.http_status == 500
    # Retries belong to the delivery schedule: the client library must not retry on its own.
    assert endpoint.requests == ["PUT /media/photo.jpg"]


def redirected_message(status: int) -> str:
    return (
        f"the S3 endpoint redirected (HTTP {status}), and redirects are not followed; "
        "set the bucket's region and endpoint"
    )


@pytest.mark.parametrize("status", [301, 302, 307])
@pytest.mark.parametrize(
    ("size", "first_request"),
    [(1024, "PUT /media/photo.jpg"), (SIXTEEN_MIB + 1, "POST /media/photo.jpg?uploads")],
    ids=["single PUT", "multipart"],
)
def test_a_redirecting_endpoint_gets_one_request_per_attempt_and_a_clear_error_that_will_be_retried(
    status, size, first_request
):
    # botocore's region redirector used to answer this with 80 requests (HeadBucket after HeadBucket, each
    # redirected again) and a RecursionError.
    elsewhere = FixedAnswerServer(200)
    endpoint = FixedAnswerServer(status, {"Location": f"{elsewhere.url}/media/photo.jpg"})
    backend = backend_for_endpoint(endpoint.url)
    raised = []
    try:
        for attempt in (1, 2):
            with pytest.raises(DeliveryError) as refused:
                backend.deliver(make_staged_image(bytes(size), attempt=attempt), "photo.jpg")
            raised.append(refused.value)
    finally:
        endpoint.stop()
        elsewhere.stop()

    assert endpoint.requests == [first_request, first_request]
    assert elsewhere.requests == []
    for error in raised:
        assert error.message == redirected_message(status)
        assert (error.http_status, error.permanent, error.needs_reconnect) == (status, False, False)


def test_an_unreachable_endpoint_is_a_failure_that_will_be_retried():
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        backend_for_endpoint(f"http://127.0.0.1:{free_port()}").deliver(image, "photo.jpg")

    assert raised.value.message.startswith("S3 unreachable:")
    assert "127.0.0.1" in raised.value.message
    assert raised.value.permanent is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"customHeaders": {"X-Custom": "1"}}, "X-Custom is not supported"),
        ({"pathTemplate": "{session_id}/{nope}"}, "unknown variable {nope}"),
        ({"bucket": ""}, "must not be empty"),
        ({"acl": "public-read"}, "Extra inputs are not permitted"),
    ],
)
def test_config_is_validated_strictly(config, message):
    with pytest.raises(ValueError, match=message):
        S3Config.model_validate({"bucket": "media", "accessKey": "testing", "secretKey": "testingsecret", **config})


def test_deliveries_with_the_same_credentials_reuse_one_client_and_bucket_and_a_changed_secret_gets_a_new_one(
    seaweedfs_server,
):
    bucket = seaweedfs_server.create_bucket()
    first, second = (s3_backend(seaweedfs_server, bucket).storage(make_staged_image(b"x")) for _ in range(2))
    assert first.connection is second.connection
    assert first.bucket is second.bucket and first.bucket.name == bucket
    other_bucket = seaweedfs_server.create_bucket()
    assert s3_backend(seaweedfs_server, other_bucket).storage(make_staged_image(b"x")).bucket.name == other_bucket

    changed = s3_backend(seaweedfs_server, bucket, secretKey="not-the-secret-key").storage(make_staged_image(b"x"))
    assert changed.connection is not first.connection
    with pytest.raises(DeliveryError) as refused:
        s3_backend(seaweedfs_server, bucket, secretKey="not-the-secret-key").deliver(make_staged_image(b"x"), "a.jpg")
    assert refused.value.needs_reconnect
    s3_backend(seaweedfs_server, bucket).deliver(make_staged_image(b"y"), "a.jpg")
    assert seaweedfs_server.objects(bucket) == {"a.jpg": b"y"}


@pytest.mark.parametrize(("template", "folder"), [("{tag:album}", ""), ("photos/{tag:album}", "photos/")])
def test_a_file_name_that_renders_empty_becomes_the_image_id(moto_server, template, folder):
    bucket = moto_server.create_bucket()
    backend = s3_backend(moto_server, bucket, pathTemplate=template)
    image = make_staged_image(noisy_jpeg((160, 120)), tags=[], extension="jpg")
    path = backend.remote_path(image)

    backend.deliver(image, path)

    assert path == f"{folder}{image.image_id}.jpg"
    assert list(moto_server.objects(bucket)) == [path]
