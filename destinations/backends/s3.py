"""S3 and S3-compatible destination, on django-storages' S3Storage (which owns the upload code)."""

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files import File
from pydantic import AnyHttpUrl, SecretStr, field_validator
from storages.backends.s3 import S3Storage

from apertur.http import HostNotAllowed, guard_botocore_client
from destinations.backends.base import (
    BackendConfig,
    DeliveryError,
    DeliveryReceipt,
    DestinationBackend,
    StagedImage,
    refuse_repeated_header_names,
)
from destinations.paths import DEFAULT_PATH_TEMPLATE, PathTemplateError, image_path, validate_template

MULTIPART_THRESHOLD = 16 * 1024 * 1024
# customHeaders → boto3 ExtraArgs (lower-cased header names); x-amz-meta-* goes into Metadata.
HEADER_TO_EXTRA_ARG = {
    "cache-control": "CacheControl",
    "content-disposition": "ContentDisposition",
    "content-language": "ContentLanguage",
    "x-amz-storage-class": "StorageClass",
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-aws-kms-key-id": "SSEKMSKeyId",
    "x-amz-acl": "ACL",
    "x-amz-tagging": "Tagging",
}
METADATA_PREFIX = "x-amz-meta-"
# RFC 9110 field-name token characters.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
    }
)


class S3Config(BackendConfig):
    endpoint: AnyHttpUrl | None = None
    region: str = "us-east-1"
    bucket: str
    accessKey: str
    secretKey: SecretStr
    pathTemplate: str = DEFAULT_PATH_TEMPLATE
    customHeaders: dict[str, str] = {}

    @field_validator("bucket", "accessKey", "region")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("pathTemplate")
    @classmethod
    def template_is_known(cls, value: str) -> str:
        try:
            return validate_template(value)
        except PathTemplateError as error:
            raise ValueError(str(error)) from error

    @field_validator("customHeaders")
    @classmethod
    def headers_are_supported(cls, headers: dict[str, str]) -> dict[str, str]:
        refuse_repeated_header_names(headers)
        for name, value in headers.items():
            lowered = name.lower()
            if not HEADER_NAME.fullmatch(name) or lowered == METADATA_PREFIX:
                raise ValueError(f"{name!r} is not a valid header name")
            if lowered not in HEADER_TO_EXTRA_ARG and not lowered.startswith(METADATA_PREFIX):
                supported = ", ".join(sorted(HEADER_TO_EXTRA_ARG))
                raise ValueError(f"{name} is not supported; use x-amz-meta-* or one of {supported}")
            # Refused here, or every attempt fails: http.client refuses line breaks, botocore refuses non-ASCII
            # metadata, and S3 servers answer 400 to other control characters.
            if not (value.isascii() and value.isprintable()):
                raise ValueError(
                    f"the value of {name} must be printable ASCII, without line breaks or control characters"
                )
        return headers


# Building a boto3 resource costs ~150 ms of CPU (it loads the service model), more than a typical upload.
# Resources are not thread-safe, so each worker thread keeps its own few, keyed by everything that shapes them.
_RESOURCES_PER_THREAD = 16
_thread_resources = threading.local()
# They are all made from one boto3 session without credentials of its own (each resource gets its destination's),
# whose loader keeps the parsed service model: only the first resource of the process pays for loading it
# (docs/benchmarks.md "To S3"). A botocore session is not safe to make clients from in two threads at once.
_shared_session: boto3.Session | None = None
_shared_session_lock = threading.Lock()


@dataclass
class _ThreadResource:
    """A worker thread's resource for one endpoint and key pair, and the Bucket objects made from it: boto3 builds
    a Bucket's class from the service model each time one is made, a few milliseconds of CPU per delivery."""

    resource: Any
    buckets: dict[str, Any] = field(default_factory=dict)


class GuardedS3Storage(S3Storage):
    """S3Storage whose connections pass the outbound-host gate and are reused across deliveries."""

    def _thread_resource(self) -> _ThreadResource:
        cache: OrderedDict = getattr(_thread_resources, "by_key", None) or OrderedDict()
        _thread_resources.by_key = cache
        # The client config is derived from the endpoint alone (see S3Backend.storage), so it needs no key part.
        key = (self.endpoint_url, self.region_name, self.access_key, self.secret_key)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        global _shared_session
        with _shared_session_lock:
            if _shared_session is None:
                _shared_session = boto3.Session()
            resource = _shared_session.resource(
                "s3",
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                aws_session_token=None,  # a destination has its own keys only
                region_name=self.region_name,
                use_ssl=self.use_ssl,
                endpoint_url=self.endpoint_url,
                config=self.client_config,
                verify=self.verify,
            )
        guard_botocore_client(resource.meta.client)
        cache[key] = entry = _ThreadResource(resource)
        while len(cache) > _RESOURCES_PER_THREAD:
            cache.popitem(last=False)
        return entry

    @property
    def connection(self):
        return self._thread_resource().resource

    @property
    def bucket(self):
        if self._bucket is None:
            entry = self._thread_resource()
            if self.bucket_name not in entry.buckets:
                entry.buckets[self.bucket_name] = entry.resource.Bucket(self.bucket_name)
            self._bucket = entry.buckets[self.bucket_name]
        return self._bucket


class S3Backend(DestinationBackend):
    type = "s3"
    Config = S3Config
    config: S3Config

    def remote_path(self, image: StagedImage) -> str:
        return image_path(self.config.pathTemplate, image)

    def _object_parameters(self, image: StagedImage) -> dict:
        parameters: dict = {"ContentType": image.mime_type, "ChecksumAlgorithm": "SHA256"}
        metadata = {}
        for name, value in self.config.customHeaders.items():
            lowered = name.lower()
            if lowered.startswith(METADATA_PREFIX):
                metadata[lowered.removeprefix(METADATA_PREFIX)] = value
            else:
                parameters[HEADER_TO_EXTRA_ARG[lowered]] = value
        if metadata:
            parameters["Metadata"] = metadata
        return parameters

    def storage(self, image: StagedImage) -> S3Storage:
        endpoint = str(self.config.endpoint) if self.config.endpoint else None
        return GuardedS3Storage(
            bucket_name=self.config.bucket,
            endpoint_url=endpoint,
            region_name=self.config.region,
            access_key=self.config.accessKey,
            secret_key=self.config.secret_value("secretKey"),
            file_overwrite=True,
            default_acl=None,
            querystring_auth=False,
            object_parameters=self._object_parameters(image),
            addressing_style="path" if endpoint else None,
            signature_version="s3v4",
            verify=settings.APERTUR_OUTBOUND_CA_BUNDLE or None,
            client_config=BotoConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint else "auto"},
                connect_timeout=10,
                read_timeout=60,
                # One attempt per delivery (retries belong to the delivery schedule). botocore's
                # `max_attempts` counts retries in its default mode, so 1 would still mean two requests.
                retries={"total_max_attempts": 1},
            ),
            transfer_config=TransferConfig(
                # s3transfer goes multipart at size >= threshold; one PUT must take up to 16 MiB inclusive.
                multipart_threshold=MULTIPART_THRESHOLD + 1,
                multipart_chunksize=MULTIPART_THRESHOLD,
                use_threads=False,
            ),
        )

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        storage = self.storage(image)
        try:
            with image.open() as stream:
                name = storage.save(path, File(stream, name=path))
        except HostNotAllowed as error:
            raise DeliveryError(f"refused host: {error}", permanent=True) from error
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status is not None and 300 <= status < 400:
                # Redirects are not followed (apertur/http.py). S3 redirects a request sent to the wrong region or
                # endpoint: a config problem, but not permanent, so a config fixed within the retry schedule still
                # delivers (as with refused credentials).
                raise DeliveryError(
                    f"the S3 endpoint redirected (HTTP {status}), and redirects are not followed; "
                    "set the bucket's region and endpoint",
                    http_status=status,
                ) from error
            message = error.response.get("Error", {}).get("Message", str(error))
            raise DeliveryError(
                f"S3 {code or 'error'}: {message}", needs_reconnect=code in CREDENTIAL_ERRORS, http_status=status
            ) from error
        except BotoCoreError as error:
            # botocore wraps whatever its socket layer raised, the host gate's refusal included.
            if isinstance(getattr(error, "kwargs", {}).get("error"), HostNotAllowed):
                raise DeliveryError(f"refused host: {error.kwargs['error']}", permanent=True) from error
            raise DeliveryError(f"S3 unreachable: {error}") from error
        return DeliveryReceipt(remote_reference=f"s3://{self.config.bucket}/{name}")
