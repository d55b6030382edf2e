"""Streaming multipart handling for image uploads: size enforced and SHA-256 computed while the body arrives."""

import hashlib
import tempfile

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile

from apertur.api.errors import AppError

MEBIBYTE = 1024 * 1024
IMAGE_FIELD = "file"


def too_large(limit_bytes: int) -> AppError:
    return AppError(413, "FILE_TOO_LARGE", f"The image is larger than {limit_bytes // MEBIBYTE} MB.")


class ReceivedFile(UploadedFile):
    """The uploaded image in a temporary file, with the digest computed on the way in."""

    def __init__(self, file, name: str, content_type: str, size: int, sha256: str) -> None:
        super().__init__(file, name=name, content_type=content_type, size=size)
        self.sha256 = sha256

    def temporary_file_path(self) -> str:
        return self.file.name


class ImageUploadHandler(FileUploadHandler):
    """Writes the `file` part to disk, never to memory, and stops at `limit_bytes`."""

    def __init__(self, request, limit_bytes: int) -> None:
        super().__init__(request)
        self.limit_bytes = limit_bytes

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
            raise too_large(self.limit_bytes)
        self.hasher.update(raw_data)
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> ReceivedFile:
        self.file.flush()
        self.file.seek(0)
        return ReceivedFile(
            self.file,
            name=self.file_name or "",
            content_type=self.content_type or "",
            size=self.size,
            sha256=self.hasher.hexdigest(),
        )
