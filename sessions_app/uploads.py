"""Reading an upload's body (docs/api.md "Uploading images"): a multipart `file` part streamed to disk with the
size enforced and the SHA-256 computed while the body arrives, or an encrypted envelope sent as a JSON body.

`read_upload_body` works on a plain Django request, so the API and the phone page's form post read bodies the
same way. `image_receive` calls it only once the session's own rules have passed.
"""

import hashlib
import json
import tempfile
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, QueryDict
from django.http import multipartparser as django_multipart
from django.http.multipartparser import MultiPartParserError

from apertur.errors import AppError
from sessions_app.encryption import invalid_envelope

MEBIBYTE = 1024 * 1024
IMAGE_FIELD = "file"
SOURCE_FIELD = "source"
# What a multipart body may add around the image: boundaries, part headers, the `source` field.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Django reads at most 1 KiB of each part's headers and refuses the body beyond that, which a file name of about
# 1 KB already reaches. The contract trims long names instead, so the headers get room for a 4 KB name even
# percent-encoded (`filename*=UTF-8''…`, three bytes per byte). Django has no setting for it; the constant
# bounds only how much of a part is searched for the end of its headers.
MAX_PART_HEADER_BYTES = 16 * 1024
django_multipart.MAX_TOTAL_HEADER_SIZE = max(django_multipart.MAX_TOTAL_HEADER_SIZE, MAX_PART_HEADER_BYTES)


def too_large(limit_bytes: int) -> AppError:
    return AppError(413, "FILE_TOO_LARGE", f"The image is larger than {limit_bytes // MEBIBYTE} MB.")


def file_missing() -> AppError:
    return AppError(
        400, "VALIDATION_ERROR", "Send the image as the multipart part `file`.", fields={IMAGE_FIELD: ["required"]}
    )


@dataclass(frozen=True)
class UploadLimits:
    """How much of a body may be read. `body_bytes` is larger than `image_bytes` for an encrypted upload (base64
    and the JSON around it); a refusal always names `image_bytes`, the limit the client knows."""

    image_bytes: int
    body_bytes: int


class ReceivedFile(UploadedFile):
    """The uploaded image in a temporary file, with the digest computed on the way in."""

    def __init__(self, file, client_name: str, content_type: str, size: int, sha256: str) -> None:
        # UploadedFile refuses "", "." and ".." as names, which the contract takes as "no name"; the service
        # sanitises the name as sent (`client_name`) itself, so the file object gets a neutral one.
        super().__init__(file, name="upload", content_type=content_type, size=size)
        self.client_name = client_name
        self.sha256 = sha256

    def temporary_file_path(self) -> str:
        return self.file.name


@dataclass
class UploadContent:
    """What an upload's body carried, not yet checked: the multipart part `file` (the image, or an envelope when
    encrypted) or an envelope sent as the JSON body; the file name the client gave and its `source` field."""

    file: ReceivedFile | None = None
    envelope: dict | None = None
    filename: str = ""
    source: object = None
    form: QueryDict | None = None  # every field of a multipart body (the upload page's form checks its CSRF token)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class ImageUploadHandler(FileUploadHandler):
    """Writes the `file` part to disk, never to memory, and stops at `limit_bytes`.

    `image_limit_bytes` is the limit the client is told about: an encrypted envelope may be larger than the
    image it carries (base64), so its byte limit differs from the image's.
    """

    def __init__(self, request, limit_bytes: int, image_limit_bytes: int | None = None) -> None:
        super().__init__(request)
        self.limit_bytes = limit_bytes
        self.image_limit_bytes = image_limit_bytes or limit_bytes

    def new_file(self, field_name, file_name, *args, **kwargs) -> None:
        if field_name != IMAGE_FIELD:
            raise SkipFile
        super().new_file(field_name, file_name, *args, **kwargs)
        self.file = tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115 (request-owned)
        self.hasher = hashlib.sha256()
        self.size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.size += len(raw_data)
        if self.size > self.limit_bytes:
            self.file.close()
            raise too_large(self.image_limit_bytes)
        self.hasher.update(raw_data)
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> ReceivedFile:
        # Hand the file over: Django closes any `handler.file` it finds when it skips a later part, which
        # would delete this image's temporary file under it.
        file = self.file
        del self.file
        file.flush()
        file.seek(0)
        return ReceivedFile(
            file,
            client_name=self.file_name or "",
            content_type=self.content_type or "",
            size=self.size,
            sha256=self.hasher.hexdigest(),
        )


class _NamelessFileKeepingParser(django_multipart.MultiPartParser):
    def sanitize_file_name(self, file_name: str) -> str:
        # Django drops a file part whose name sanitises to nothing ("..", "photos/") as if it had not been
        # sent; the contract keeps the image and names it image.<ext>, which the upload service does.
        return super().sanitize_file_name(file_name) or file_name


def declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # not a number: the streaming limit still applies


def read_upload_body(request: HttpRequest, limits: UploadLimits) -> UploadContent:
    """Read the body of an upload request within `limits`: 413 before reading when the declared length is over,
    or as soon as the streamed part passes the limit; 400 without reading for a form that carries no file."""
    if request.content_type == "multipart/form-data":
        return _read_multipart(request, limits)
    if request.content_type == "application/json":
        return _read_json(request, limits)
    if request.content_type == "application/x-www-form-urlencoded" or not declared_length(request):
        # A form posted without enctype="multipart/form-data" sends only the file's name, never its bytes.
        raise file_missing()
    raise AppError(415, "UNSUPPORTED_MEDIA_TYPE", f'Unsupported media type "{request.content_type}" in request.')


def _read_multipart(request: HttpRequest, limits: UploadLimits) -> UploadContent:
    if declared_length(request) > limits.body_bytes + MULTIPART_OVERHEAD_BYTES:
        raise too_large(limits.image_bytes)
    handler = ImageUploadHandler(request, limits.body_bytes, image_limit_bytes=limits.image_bytes)
    try:  # the constructor checks the boundary, parse() the rest
        parser = _NamelessFileKeepingParser(request.META, request, [handler], request.encoding)
        fields, files = parser.parse()
    except MultiPartParserError as error:
        raise AppError(400, "VALIDATION_ERROR", f"Malformed multipart body: {error}") from error
    received = files.get(IMAGE_FIELD)
    return UploadContent(
        file=received,
        filename=received.client_name if received else "",
        source=fields.get(SOURCE_FIELD),
        form=fields,
    )


def _read_json(request: HttpRequest, limits: UploadLimits) -> UploadContent:
    """An envelope as the JSON body, read whole: JSON has to be, so the limit is checked before and while reading
    (Django's DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB, would refuse most photos)."""
    if declared_length(request) > limits.body_bytes:
        raise too_large(limits.image_bytes)
    raw = request.read(limits.body_bytes + 1)
    if len(raw) > limits.body_bytes:
        raise too_large(limits.image_bytes)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise AppError(400, "VALIDATION_ERROR", f"Malformed request body: JSON parse error - {error}") from error
    if not isinstance(data, dict):
        raise invalid_envelope("the envelope is not a JSON object")
    filename = data.get("filename")
    return UploadContent(
        envelope=data, filename=filename if isinstance(filename, str) else "", source=data.get(SOURCE_FIELD)
    )


def received_from_bytes(data: bytes, *, client_name: str, content_type: str) -> ReceivedFile:
    """A decrypted image, staged in a temporary file like a streamed one."""
    file = tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115 (request-owned)
    file.write(data)
    file.flush()
    file.seek(0)
    return ReceivedFile(
        file,
        client_name=client_name,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
