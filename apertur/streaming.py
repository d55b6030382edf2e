"""File bodies streamed under ASGI one chunk at a time.

Django serves a response with a sync iterator under ASGI by reading the iterator whole into a list in a thread
(`StreamingHttpResponse.__aiter__`, with a warning): a 20 MB image would sit in memory for the whole send. Here
the file is read a chunk at a time in a pool thread instead.
"""

from collections.abc import AsyncIterator
from typing import BinaryIO

from asgiref.sync import sync_to_async
from django.http import FileResponse

CHUNK_BYTES = 64 * 1024


async def read_in_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    read = sync_to_async(file.read, thread_sensitive=False)
    while chunk := await read(CHUNK_BYTES):
        yield chunk


class StreamedFileResponse(FileResponse):
    """A FileResponse that streams under ASGI too (under WSGI and the test client it iterates as FileResponse
    does). The file stays registered with the response, which closes it."""

    block_size = CHUNK_BYTES

    def __aiter__(self) -> AsyncIterator[bytes]:
        return read_in_chunks(self.file_to_stream)
