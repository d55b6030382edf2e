"""Streaming multipart handling for image uploads: size enforced and SHA-256 computed while the body arrives."""

import hashlib
import tempfile

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, MultiPartParser, get_encoding

from apertur.errors import AppError

MEBIBYTE = 1024 * 1024
IMAGE_FIELD = "file"


def too_large(limit_bytes: int) -> AppError:
    return AppError(413, "FILE_TOO_LARGE", f"The image is larger than {limit_bytes // MEBIBYTE} MB.")


class ReceivedFile(UploadedFile):
    """The uploaded image in a temporary file, with the digest computed on the way in."""

    def __init__(self, file, client_name: str, content_type: str, size: int, sha256: str) -> None:
        # UploadedFile refuses "", "." and ".." as names, which SPEC §5 takes as "no name"; the view
        # sanitises the name as sent (`client_name`) itself, so the file object gets a neutral one.
        super().__init__(file, name="upload", content_type=content_type, size=size)
        self.client_name = client_name
        self.sha256 = sha256

    def temporary_file_path(self) -> str:
        return self.file.name


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


class _NamelessFileKeepingParser(DjangoMultiPartParser):
    def sanitize_file_name(self, file_name: str) -> str:
        # Django drops a file part whose name sanitises to nothing ("..", "photos/") as if it had not been
        # sent; SPEC §5 keeps the image and names it image.<ext>, which the view's sanitise_filename does.
        return super().sanitize_file_name(file_name) or file_name


class ImageMultiPartParser(MultiPartParser):
    """DRF's multipart parser, except that an image whose file name sanitises to nothing is kept."""

    def parse(self, stream, media_type=None, parser_context=None) -> DataAndFiles:
        request = parser_context["request"]
        meta = {**request.META, "CONTENT_TYPE": media_type}
        parser = _NamelessFileKeepingParser(meta, stream, request.upload_handlers, get_encoding(parser_context))
        try:
            return DataAndFiles(*parser.parse())
        except MultiPartParserError as error:
            raise ParseError(f"Multipart form parse error - {error}") from error


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
