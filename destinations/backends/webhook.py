"""Signed HTTP webhook destination (docs/api.md "Webhook destination")."""

import base64
import binascii
import hashlib
import hmac
import json
import re
import tempfile
import time
from typing import IO, Literal
from urllib.parse import quote

import requests
import urllib3
from django.conf import settings
from pydantic import AnyHttpUrl, SecretStr, field_validator
from requests_toolbelt import MultipartEncoder

from apertur.http import HostNotAllowed, attempt_session
from destinations.backends.base import (
    BackendConfig,
    DeliveryError,
    DeliveryReceipt,
    DestinationBackend,
    StagedImage,
    refuse_repeated_header_names,
)

CHUNK_SIZE = 64 * 1024
# Base64 works on 3-byte groups: encoding a multiple of 3 per chunk concatenates into one valid string.
BASE64_CHUNK_SIZE = 3 * 16 * 1024
PROTECTED_HEADERS = frozenset(
    {
        "x-apertur-signature",
        "x-aptr-signature",
        "x-aptr-session-id",
        "x-aptr-image-id",
        "x-aptr-image-index",
        "x-aptr-delivery-id",
        "x-aptr-attempt",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
    }
)
# RFC 9110 field-name token characters.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# A receiver's answer body is not used. One this short that arrives this quickly is read to its end, so that the
# connection can carry the next delivery (apertur/http.py `kept_outbound_session`); a longer, slower or endless one
# closes the connection instead of holding the worker.
REUSABLE_ANSWER_BYTES = 64 * 1024
REUSABLE_ANSWER_SECONDS = 1.0
# The receiver refused our signature: the shared secret is this destination's credential.
CREDENTIAL_REFUSED_STATUSES = frozenset({401, 403})


class WebhookConfig(BackendConfig):
    url: AnyHttpUrl
    secret: SecretStr
    format: Literal["multipart", "json_base64", "binary"] = "multipart"
    customHeaders: dict[str, str] = {}

    @field_validator("secret")
    @classmethod
    def secret_is_usable(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) < 8:
            raise ValueError("the secret must be at least 8 characters")
        try:
            key = standard_webhooks_key(secret)
        except binascii.Error:
            key = b""
        if not key:
            raise ValueError("a whsec_ secret must be whsec_ followed by base64")
        return value

    @field_validator("customHeaders")
    @classmethod
    def headers_are_safe(cls, headers: dict[str, str]) -> dict[str, str]:
        refuse_repeated_header_names(headers)
        for name, value in headers.items():
            if name.lower() in PROTECTED_HEADERS:
                raise ValueError(f"{name} is set by Apertur and cannot be overridden")
            # Header values go out as Latin-1 and must not smuggle line breaks or other control characters.
            if not HEADER_NAME.match(name) or not value.isprintable() or max(map(ord, value), default=0) > 255:
                raise ValueError(f"header {name!r} is not a valid HTTP header")
        return headers


def standard_webhooks_key(secret: str) -> bytes:
    """Standard Webhooks secrets look like `whsec_<base64>`; any other secret is used as its UTF-8 bytes.

    Decoded as the reference `standardwebhooks` library does, so padding is optional.
    """
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_") + "==")
    return secret.encode()


class _SigningWriter:
    """Writes the body to a temporary file while computing both signatures, so bytes are read once."""

    def __init__(self, secret: str, message_id: str, timestamp: int) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the caller)
        self.apertur = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self.standard = hmac.new(standard_webhooks_key(secret), f"{message_id}.{timestamp}.".encode(), hashlib.sha256)

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.apertur.update(chunk)
        self.standard.update(chunk)


class WebhookBackend(DestinationBackend):
    type = "webhook"
    Config = WebhookConfig
    config: WebhookConfig

    def _metadata(self, image: StagedImage) -> dict[str, str]:
        return {
            "session_id": image.session_id,
            "image_id": image.image_id,
            "image_index": str(image.index),
            "filename": image.filename,
            "mime_type": image.mime_type,
            "size_bytes": str(image.size_bytes),
            "sha256": image.sha256,
            "source": image.source,
        }

    def _write_body(self, writer: _SigningWriter, image: StagedImage) -> str:
        """Write the body for the configured format; return its content type."""
        metadata = self._metadata(image)
        with image.open() as stream:
            if self.config.format == "binary":
                while chunk := stream.read(CHUNK_SIZE):
                    writer.write(chunk)
                return image.mime_type
            if self.config.format == "json_base64":
                head = {
                    **metadata,
                    "image_index": image.index,
                    "size_bytes": image.size_bytes,
                    "tags": image.tags,
                }
                writer.write(json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"data":"')
                while chunk := stream.read(BASE64_CHUNK_SIZE):
                    writer.write(base64.b64encode(chunk))
                writer.write(b'"}')
                return "application/json"
            fields: list[tuple[str, object]] = [*metadata.items(), ("tags", json.dumps(image.tags))]
            fields += [(f"tag_{key}", value) for key, _, value in (t.partition(":") for t in image.tags if ":" in t)]
            fields.append(("image", (image.filename, stream, image.mime_type)))
            encoder = MultipartEncoder(fields=fields)
            while chunk := encoder.read(CHUNK_SIZE):
                writer.write(chunk)
            return encoder.content_type

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        secret = self.config.secret.get_secret_value()
        timestamp = int(time.time())
        writer = _SigningWriter(secret, image.delivery_id, timestamp)
        with writer.file:
            content_type = self._write_body(writer, image)
            signature = f"sha256={writer.apertur.hexdigest()}"
            headers = {
                **self.config.customHeaders,
                "Content-Type": content_type,
                "X-Apertur-Signature": signature,
                "X-Aptr-Signature": signature,
                "X-Aptr-Session-Id": image.session_id,
                "X-Aptr-Image-Id": image.image_id,
                "X-Aptr-Image-Index": str(image.index),
                "X-Aptr-Delivery-Id": image.delivery_id,
                "X-Aptr-Attempt": str(image.attempt),
                "webhook-id": image.delivery_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": "v1," + base64.b64encode(writer.standard.digest()).decode(),
            }
            if self.config.format == "binary":
                headers.update(
                    {
                        # Header values are Latin-1 on the wire; percent-encoded UTF-8 carries any name.
                        "X-Aptr-Filename": quote(image.filename, safe=""),
                        "X-Aptr-Sha256": image.sha256,
                        "X-Aptr-Source": image.source,
                        "X-Aptr-Tags": json.dumps(image.tags),
                    }
                )
            headers["Content-Length"] = str(writer.file.tell())
            writer.file.seek(0)
            response = self._post(str(self.config.url), writer.file, headers)
        status = response.status_code
        if 200 <= status < 300:
            return DeliveryReceipt(remote_reference=str(self.config.url), http_status=status)
        if 300 <= status < 400:
            raise DeliveryError(f"HTTP {status} from the webhook (redirects are not followed)", http_status=status)
        raise DeliveryError(
            f"HTTP {status} from the webhook",
            needs_reconnect=status in CREDENTIAL_REFUSED_STATUSES,
            http_status=status,
        )

    def _post(self, url: str, body: IO[bytes], headers: dict[str, str]) -> requests.Response:
        try:
            with attempt_session(kept=self.context.keep_connections) as session:
                response = session.post(
                    url,
                    data=body,
                    headers=headers,
                    # The webhook's own timeout bounds each wait; the attempt's deadline bounds them all.
                    timeout=self.context.deadline.timeout(settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS),
                    allow_redirects=False,
                    # Only the status matters: a receiver that drips a long body must not hold the worker.
                    stream=True,
                )
                _finish_answer(response)
                return response
        except HostNotAllowed as error:
            raise DeliveryError(f"refused host: {error}", permanent=True) from error
        except requests.Timeout as error:
            raise DeliveryError(
                f"the webhook did not answer within {settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS:g} s"
            ) from error
        except requests.RequestException as error:
            raise DeliveryError(f"could not reach the webhook: {_root_cause(error)}") from error


def _finish_answer(response: requests.Response) -> None:
    """Read a short answer body to its end, which hands the connection back to its pool; anything else (a body
    declared longer than REUSABLE_ANSWER_BYTES, one that is still coming after REUSABLE_ANSWER_SECONDS, a read that
    fails) closes the connection when the response is closed. The status is already known either way."""
    raw = response.raw
    until = time.monotonic() + REUSABLE_ANSWER_SECONDS
    received = 0
    try:
        if raw.chunked or (raw.length_remaining is not None and raw.length_remaining <= REUSABLE_ANSWER_BYTES):
            # urllib3 releases the connection (and forgets it here) once the body has ended.
            while (connection := raw.connection) is not None and received <= REUSABLE_ANSWER_BYTES:
                left = until - time.monotonic()
                if left <= 0 or connection.sock is None:
                    break
                # One receive per read below, each within what is left (urllib3 sets its own timeout again for
                # the connection's next request).
                connection.sock.settimeout(left)
                chunk = raw.read1(CHUNK_SIZE, decode_content=False)
                if not chunk:
                    break
                received += len(chunk)
    except (OSError, urllib3.exceptions.HTTPError, requests.RequestException):
        pass  # the connection is closed below
    finally:
        response.close()


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        nested = error.__cause__ or error.__context__
        if isinstance(nested, HostNotAllowed):
            return str(nested)
        error = nested
    return str(error)
