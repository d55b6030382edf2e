"""S3 and S3-compatible destination, on django-storages' S3Storage (which owns the upload code)."""

from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from pydantic import AnyHttpUrl, SecretStr, field_validator
from storages.backends.s3 import S3Storage

from apertur_server.http import HostNotAllowed, guard_botocore_client
from destinations.backends.base import (
    BackendConfig,
    DeliveryError,
    DeliveryReceipt,
    DestinationBackend,
    StagedImage,
)
from destinations.paths import DEFAULT_PATH_TEMPLATE, PathTemplateError, validate_template

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
        for name in headers:
            lowered = name.lower()
            if lowered not in HEADER_TO_EXTRA_ARG and not lowered.startswith(METADATA_PREFIX):
                supported = ", ".join(sorted(HEADER_TO_EXTRA_ARG))
                raise ValueError(f"{name} is not supported; use x-amz-meta-* or one of {supported}")
        return headers


class GuardedS3Storage(S3Storage):
    """S3Storage whose connections pass the outbound-host gate."""

    @property
    def connection(self):
        fresh = getattr(self._connections, "connection", None) is None
        connection = super().connection
        if fresh:
            guard_botocore_client(connection.meta.client)
        return connection


class S3Backend(DestinationBackend):
    type = "s3"
    Config = S3Config
    config: S3Config
    path_template_field = "pathTemplate"

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
                multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD, use_threads=False
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
