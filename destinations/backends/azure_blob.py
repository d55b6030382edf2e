"""Azure Blob Storage destination (type azure_blob), on azure-storage-blob (docs/destinations.md "Types").

The SDK sends its requests through a session from `outbound_session()`: the blob endpoint named by the connection
string is a host the user typed in, so it is resolved, checked and dialled at its checked address, and every socket
is under the attempt deadline. The SDK's own retries and redirects are off: an attempt is one try, and retries
belong to the delivery schedule.

An image up to APERTUR_AZURE_BLOCK_THRESHOLD_BYTES is one Put Blob. A larger one is streamed from staging in blocks
of APERTUR_AZURE_BLOCK_SIZE_BYTES (Put Block) and committed at once (Put Block List). Every request carries the
Content-MD5 of its body, which the service verifies; the blob gets the image's content type and the MD5 of the
whole image. Uncommitted blocks are never visible, so a transfer cut half-way leaves no blob (or the previous one
untouched) and a retry writes one complete blob.
"""

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient, ContentSettings
from django.conf import settings
from pydantic import ConfigDict, SecretStr, field_validator

from apertur.http import USER_AGENT, HostNotAllowed, is_host_name_or_address, outbound_session
from destinations.backends.base import (
    BackendConfig,
    DeliveryError,
    DeliveryReceipt,
    DestinationBackend,
    StagedImage,
)
from destinations.paths import DEFAULT_PATH_TEMPLATE, PathTemplateError, image_path, validate_template

DEFAULT_ENDPOINT_SUFFIX = "core.windows.net"
# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
CONTAINER_NAME = re.compile(r"(?=[a-z0-9-]{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*|\$root|\$web")
ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
# The service's answers to credentials it refuses: a wrong key or signature, an expired SAS, a SAS without write
# permission. Azurite answers a wrong key with AuthorizationFailure where Azure says AuthenticationFailed.
CREDENTIAL_ERRORS = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
    }
)
SIGNATURE_IN_TEXT = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


class ConnectionStringError(ValueError):
    """A connection string that cannot be used. The message never repeats the string: it holds the key."""


@dataclass(frozen=True)
class Connection:
    """What a connection string says: where the blob service is, and the credential to present."""

    endpoint: str
    credential: AzureNamedKeyCredential | AzureSasCredential
    secrets: tuple[str, ...]  # the parts no message may show

    def scrubbed(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "••••")
        return SIGNATURE_IN_TEXT.sub(r"\1••••", text)


def parse_connection_string(value: str) -> Connection:
    """Read an Azure Storage connection string (`Key=Value` pairs separated by `;`, keys in any case).

    The blob endpoint is `BlobEndpoint`, or else `<DefaultEndpointsProtocol>://<AccountName>.blob.<EndpointSuffix>`
    (https and core.windows.net by default). The credential is `AccountKey` (with `AccountName`) or
    `SharedAccessSignature`. Other keys (the queue, table and file endpoints of a portal string) are ignored."""
    parts: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, separator, item = part.partition("=")
        if not separator or not key.strip() or not item.strip():
            raise ConnectionStringError(
                "must be an Azure Storage connection string: Key=Value pairs separated by ';' "
                "(the storage account's Access keys page shows one)"
            )
        parts[key.strip().lower()] = item.strip()
    if "usedevelopmentstorage" in parts:
        raise ConnectionStringError(
            "UseDevelopmentStorage is not supported: give BlobEndpoint, AccountName, AccountKey"
        )
    account = parts.get("accountname")
    if account is not None and not ACCOUNT_NAME.fullmatch(account):
        raise ConnectionStringError("AccountName must be 3 to 24 lowercase letters and digits")
    endpoint = _blob_endpoint(parts, account)
    if "accountkey" in parts:
        key = parts["accountkey"]
        if account is None:
            raise ConnectionStringError("an AccountKey needs the AccountName it belongs to")
        try:
            base64.b64decode(key, validate=True)
        except binascii.Error:
            raise ConnectionStringError(
                "AccountKey must be the base64 key shown on the account's Access keys page"
            ) from None
        return Connection(endpoint, AzureNamedKeyCredential(account, key), (key,))
    if "sharedaccesssignature" in parts:
        token = parts["sharedaccesssignature"].lstrip("?")
        if "sig=" not in token:
            raise ConnectionStringError("SharedAccessSignature must be a SAS token (…&sp=…&sig=…)")
        return Connection(endpoint, AzureSasCredential(token), (token,))
    raise ConnectionStringError("needs a credential: AccountKey (with AccountName) or SharedAccessSignature")


def _blob_endpoint(parts: dict[str, str], account: str | None) -> str:
    if "blobendpoint" in parts:
        try:
            url = urlsplit(parts["blobendpoint"])
            url.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError:
            url = None
        if url is None or url.scheme not in {"http", "https"} or not url.hostname or url.query or url.fragment:
            raise ConnectionStringError("BlobEndpoint must be an http:// or https:// URL, without a query")
        if url.username is not None:
            raise ConnectionStringError("BlobEndpoint must not hold a user name or password")
        if not is_host_name_or_address(url.hostname):
            raise ConnectionStringError(f"BlobEndpoint's host {url.hostname} is not a valid host name")
        return parts["blobendpoint"].rstrip("/")
    if account is None:
        raise ConnectionStringError("needs AccountName (or a BlobEndpoint)")
    protocol = parts.get("defaultendpointsprotocol", "https").lower()
    if protocol not in {"http", "https"}:
        raise ConnectionStringError("DefaultEndpointsProtocol must be https or http")
    suffix = parts.get("endpointsuffix", DEFAULT_ENDPOINT_SUFFIX)
    if not HOST_NAME.fullmatch(suffix):
        raise ConnectionStringError("EndpointSuffix must be a host name such as core.windows.net")
    return f"{protocol}://{account}.blob.{suffix}"


class AzureBlobConfig(BackendConfig):
    # A value that fails validation is never repeated in the error: the connection string holds the account key.
    model_config = ConfigDict(hide_input_in_errors=True)

    connectionString: SecretStr
    container: str
    pathTemplate: str = DEFAULT_PATH_TEMPLATE

    @field_validator("connectionString")
    @classmethod
    def connection_string_is_usable(cls, value: SecretStr) -> SecretStr:
        parse_connection_string(value.get_secret_value())
        return value

    @field_validator("container")
    @classmethod
    def container_name_is_valid(cls, value: str) -> str:
        if not CONTAINER_NAME.fullmatch(value):
            raise ValueError(
                "must be a container name: 3 to 63 lowercase letters, digits and single hyphens, "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("pathTemplate")
    @classmethod
    def template_is_known(cls, value: str) -> str:
        try:
            return validate_template(value)
        except PathTemplateError as error:
            raise ValueError(str(error)) from error


class _BlockWindow:
    """A seekable view of one block of the staged stream, read in small pieces, never held whole.

    The SDK reads a body twice: once for its Content-MD5 header, then to send it. The first time each byte is read it
    also goes into the MD5 of the whole image (blocks are read in order), which the blob is committed with."""

    def __init__(self, stream: IO[bytes], start: int, length: int, whole_image_md5) -> None:
        self.stream, self.start, self.length = stream, start, length
        self.whole_image_md5 = whole_image_md5
        self.position = 0
        self.hashed = 0

    def __len__(self) -> int:
        return self.length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.length}[whence]
        self.position = min(max(base + offset, 0), self.length)
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        remaining = self.length - self.position
        size = remaining if size is None or size < 0 else min(size, remaining)
        if size == 0:
            return b""
        if self.position > self.hashed:
            raise ValueError("a block is read from its start: the image's MD5 is computed in order")
        self.stream.seek(self.start + self.position)
        chunk = self.stream.read(size)
        end = self.position + len(chunk)
        if end > self.hashed:
            self.whole_image_md5.update(chunk[self.hashed - self.position :])
            self.hashed = end
        self.position = end
        return chunk


class AzureBlobBackend(DestinationBackend):
    type = "azure_blob"
    Config = AzureBlobConfig
    config: AzureBlobConfig

    def remote_path(self, image: StagedImage) -> str:
        return image_path(self.config.pathTemplate, image)

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        connection = parse_connection_string(self.config.secret_value("connectionString"))
        try:
            with self._blob_client(connection, path) as blob, image.open() as stream:
                if image.size_bytes <= settings.APERTUR_AZURE_BLOCK_THRESHOLD_BYTES:
                    self._put_blob(blob, stream, image)
                else:
                    self._put_blocks(blob, stream, image)
        except HostNotAllowed as error:
            raise DeliveryError(f"refused host: {error}", permanent=True) from error
        except HttpResponseError as error:
            raise self._refusal(error, connection) from error
        except AzureError as error:
            reason = connection.scrubbed(_root_cause(error))
            raise DeliveryError(f"Azure Blob endpoint unreachable or connection lost: {reason}") from error
        return DeliveryReceipt(remote_reference=f"{connection.endpoint}/{self.config.container}/{path}")

    def _blob_client(self, connection: Connection, path: str) -> BlobClient:
        timeout = self.context.deadline.timeout(settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS)
        transport = RequestsTransport(
            session=outbound_session(),
            connection_timeout=timeout,
            read_timeout=timeout,
            # Passed with every request, so it would replace the session's own setting: verification is never off,
            # and APERTUR_OUTBOUND_CA_BUNDLE trusts a private CA.
            connection_verify=settings.APERTUR_OUTBOUND_CA_BUNDLE or True,
        )
        return BlobClient(
            connection.endpoint,
            self.config.container,
            path,
            credential=connection.credential,
            transport=transport,
            retry_total=0,  # one try per attempt: the delivery schedule retries
            permit_redirects=False,
            user_agent=USER_AGENT,
            # upload_blob is given at most this much (see deliver): the SDK sends it as one Put Blob.
            max_single_put_size=settings.APERTUR_AZURE_BLOCK_THRESHOLD_BYTES,
        )

    @staticmethod
    def _put_blob(blob: BlobClient, stream: IO[bytes], image: StagedImage) -> None:
        # The SDK sends a single Put Blob from memory; APERTUR_AZURE_BLOCK_THRESHOLD_BYTES bounds what it holds.
        data = stream.read(image.size_bytes)
        blob.upload_blob(
            data,
            length=len(data),
            overwrite=True,
            content_settings=ContentSettings(
                content_type=image.mime_type, content_md5=hashlib.md5(data, usedforsecurity=False).digest()
            ),
            validate_content=True,
            max_concurrency=1,
        )

    @staticmethod
    def _put_blocks(blob: BlobClient, stream: IO[bytes], image: StagedImage) -> None:
        whole_image_md5 = hashlib.md5(usedforsecurity=False)
        # Block ids of one blob must all have the same length, those left uncommitted by an earlier attempt
        # included; a prefix of this attempt's own keeps another attempt's blocks out of this blob.
        prefix = uuid.uuid4().hex
        block_size = settings.APERTUR_AZURE_BLOCK_SIZE_BYTES
        block_ids = []
        for number, start in enumerate(range(0, image.size_bytes, block_size)):
            length = min(block_size, image.size_bytes - start)
            block_id = f"{prefix}{number:05d}"
            window = _BlockWindow(stream, start, length, whole_image_md5)
            blob.stage_block(block_id, window, length=length, validate_content=True)
            block_ids.append(block_id)
        blob.commit_block_list(
            block_ids,
            content_settings=ContentSettings(content_type=image.mime_type, content_md5=whole_image_md5.digest()),
        )

    def _refusal(self, error: HttpResponseError, connection: Connection) -> DeliveryError:
        status = error.status_code
        code = error.response.headers.get("x-ms-error-code", "") if error.response is not None else ""
        if status is not None and 300 <= status < 400:
            # Not followed (docs/api.md "Host safety"); a config problem the user can fix within the schedule.
            return DeliveryError(
                f"the Azure Blob endpoint redirected (HTTP {status}), and redirects are not followed; "
                "check BlobEndpoint in the connection string",
                http_status=status,
            )
        if code == "ContainerNotFound":
            return DeliveryError(
                f"the container {self.config.container!r} does not exist in this storage account (ContainerNotFound); "
                "create it or change the destination's container",
                permanent=True,
                http_status=status,
            )
        detail = connection.scrubbed(_service_message(error))
        if code:
            text = f"Azure Blob {code} (HTTP {status})" + (f": {detail}" if detail else "")
        else:  # not an answer of the blob service (a proxy's, a server's that is not Azure): its status says it all
            text = f"Azure Blob {connection.scrubbed(error.reason or 'error')} (HTTP {status})"
        if status in {401, 403} or code in CREDENTIAL_ERRORS:
            return DeliveryError(f"credentials refused: {text}", needs_reconnect=True, http_status=status)
        return DeliveryError(text, http_status=status)


def _service_message(error: HttpResponseError) -> str:
    """The first line of the service's own message (the rest is request ids, times and the raw XML)."""
    message = getattr(error, "message", "") or ""
    return message.splitlines()[0].strip() if message else ""


def _root_cause(error: BaseException) -> str:
    """The innermost error ("[Errno 111] Connection refused"), not the wrappers that repeat the request's URL.

    The SDK raises its own error outside the `except` that caught the transport's, so it is chained only by its
    `inner_exception`."""
    while True:
        nested = error.__cause__ or error.__context__ or getattr(error, "inner_exception", None)
        if not isinstance(nested, BaseException) or nested is error:
            return str(error) or type(error).__name__
        error = nested
