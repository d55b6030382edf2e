"""Static files (the admin's CSS and JS, the pages' own) served by the ASGI process itself, through WhiteNoise.

WhiteNoise's middleware is sync-only. Under ASGI one sync-only middleware makes Django run the whole chain below
it in a thread, so every async view (long polls, SSE) would hold a thread while it waits. This subclass keeps
WhiteNoise's file lookup and headers and adds the async path Django uses under uvicorn.
"""

from collections.abc import AsyncIterator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

from apertur.streaming import read_in_chunks


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:  # DEBUG: looks on disk per request
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        response = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        # Django would read a sync file iterator whole in a thread (with a warning per process); stream it in
        # chunks instead. The file stays registered with the response, which closes it.
        file = getattr(response, "file_to_stream", None)
        response.streaming_content = read_in_chunks(file) if file is not None else _nothing()
        return response


async def _nothing() -> AsyncIterator[bytes]:
    # A HEAD or a 304 has no body; an empty async iterator keeps Django on its async path.
    for chunk in ():
        yield chunk
