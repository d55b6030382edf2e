"""A small Server-Sent Events reader for tests: frames as they arrive, from a background thread, with timeouts."""

import json
import queue
import threading
from dataclasses import dataclass

import httpx


@dataclass
class Frame:
    event: str | None
    data: dict | None
    id: str | None
    comment: str | None = None


class SseReader:
    """GET `url` and parse its stream on a thread; `next()` waits for the next frame; `ended` when the server closed."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.frames: queue.Queue[Frame | None] = queue.Queue()
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.ready = threading.Event()
        self.ended = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        # What a browser's EventSource sends (https://html.spec.whatwg.org/multipage/server-sent-events.html).
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "no response head"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self._response = response
                self.status, self.headers = response.status_code, response.headers
                self.body = b""
                self.ready.set()
                if response.status_code != 200:
                    self.body = response.read()
                    return
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if fields:
                            data = json.loads(fields["data"]) if "data" in fields else None
                            self.frames.put(Frame(fields.get("event"), data, fields.get("id")))
                        fields = {}
                    elif line.startswith(":"):
                        self.frames.put(Frame(None, None, None, comment=line[1:].strip()))
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass
        finally:
            self.ready.set()
            self.ended.set()
            self.frames.put(None)

    def next(self, timeout: float = 10, *, skip_comments: bool = True) -> Frame:
        while True:
            frame = self.frames.get(timeout=timeout)
            assert frame is not None, "the stream ended"
            if frame.comment is None or not skip_comments:
                return frame

    def events_until(self, name: str, timeout: float = 15) -> list[Frame]:
        """Every event frame up to and including the first named `name`."""
        seen = []
        while True:
            frame = self.next(timeout)
            seen.append(frame)
            if frame.event == name:
                return seen

    def close(self) -> None:
        response = getattr(self, "_response", None)
        if response is not None:
            response.close()  # the reader thread's read fails at once
        self._client.close()
        self._thread.join(timeout=5)
