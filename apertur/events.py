"""The event bus: what `sessions_app.status.session_changed` publishes once a change has committed, and the one way
anything waits for a session to change (docs/api.md "Live events").

Publishing is synchronous and may happen on any thread of any process (a web request, a delivery worker). Waiting
is asynchronous: a `Listener` is an asyncio queue fed by this process's `Hub`, so an idle waiter holds neither a
thread nor a database connection.

Two transports behind one interface, chosen by `REDIS_URL`:
- in-process (the embedded default, one process serves and delivers): a ring buffer per session and a direct hand-off;
- Redis: each session's events are appended to a Redis stream (its entry ids are the event ids, trimmed to the
  replay window) and a doorbell is published on one channel; every web process reads the stream from its own
  cursor when the doorbell rings, so events reach every process in stream order and none is skipped.

Each event has an id increasing per session (`<milliseconds>-<sequence>`, a Redis stream id), kept for replay for
`APERTUR_EVENT_REPLAY_SECONDS` (5 minutes), so a client that reconnects with the last id it saw gets exactly what
it missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DOORBELL_CHANNEL = "apertur:events"


class EventBusUnavailable(Exception):
    """The bus cannot take listeners now (Redis unreachable): waiting requests answer 503."""


@dataclass(frozen=True)
class Event:
    session_id: str
    name: str
    changed_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # set by the bus when published

    def to_json(self) -> str:
        fields = {"session_id": self.session_id, "name": self.name, "changed_at": self.changed_at.isoformat()}
        return json.dumps({**fields, "data": self.data}, default=str)

    @classmethod
    def from_json(cls, text: str | bytes, *, id: str) -> Event:
        fields = json.loads(text)
        return cls(
            session_id=fields["session_id"],
            name=fields["name"],
            changed_at=datetime.fromisoformat(fields["changed_at"]),
            data=fields["data"],
            id=id,
        )


def event_id_key(event_id: str) -> tuple[int, int]:
    """Order of two event ids; a malformed id sorts first (a client's Last-Event-ID is untrusted)."""
    milliseconds, _, sequence = event_id.partition("-")
    try:
        return int(milliseconds), int(sequence or 0)
    except ValueError:
        return (-1, -1)


def in_replay_window(event_id: str) -> bool:
    """Kept for replay: trimming is approximate (Redis trims whole blocks), the promise is exact."""
    return event_id_key(event_id)[0] >= time.time() * 1000 - settings.APERTUR_EVENT_REPLAY_SECONDS * 1000


def is_valid_event_id(event_id: str) -> bool:
    return event_id_key(event_id) != (-1, -1) and len(event_id) <= 40


# --- waiting ------------------------------------------------------------------------------------------------


class Listener:
    """The events of one session, in order, from the moment it was attached (or from `after`, when given)."""

    def __init__(self, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.session_id = session_id
        self.loop = loop
        self.last_id: str | None = None
        self.closing = False
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def _offer(self, event: Event | None) -> None:
        """Called on the listener's loop. Drops what it already has (a replayed event arriving again live)."""
        if event is None:
            self.closing = True
        elif self.last_id is not None and event_id_key(event.id) <= event_id_key(self.last_id):
            return
        elif event.id:
            self.last_id = event.id
        self._queue.put_nowait(event)

    async def next(self, timeout: float | None) -> Event | None:
        """The next event, or None when `timeout` seconds pass first or the server is shutting down (`closing`)."""
        if self.closing:
            return None
        try:
            if timeout is None:
                return await self._queue.get()
            return await asyncio.wait_for(self._queue.get(), max(timeout, 0))
        except TimeoutError:
            return None

    def pending(self) -> list[Event]:
        """Everything already queued, without waiting."""
        queued = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if event is not None:
                queued.append(event)
        return queued


class Hub:
    """This process's listeners, by session. Thread-safe: events are handed to each listener's own loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Listener]] = {}
        self.closing = False

    def attach(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.setdefault(listener.session_id, set()).add(listener)
            if self.closing:
                listener.loop.call_soon_threadsafe(listener._offer, None)

    def detach(self, listener: Listener) -> None:
        with self._lock:
            listeners = self._listeners.get(listener.session_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[listener.session_id]

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._listeners)

    def count(self) -> int:
        with self._lock:
            return sum(len(listeners) for listeners in self._listeners.values())

    def dispatch(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners.get(event.session_id, ()))
        for listener in listeners:
            _call_on_loop(listener.loop, listener._offer, event)

    def reopen(self) -> None:
        """Accept waiters again (tests restart the hub in one process)."""
        with self._lock:
            self.closing = False

    def close(self) -> None:
        """Wake every listener with `closing` set: the server is shutting down, waiters answer now."""
        with self._lock:
            self.closing = True
            listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            _call_on_loop(listener.loop, listener._offer, None)


def _call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with suppress(RuntimeError):  # that loop has closed: its listener is gone
        loop.call_soon_threadsafe(callback, *args)


# --- transports ---------------------------------------------------------------------------------------------


class InProcessBus:
    """The embedded default: web server and delivery workers share one process."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self._recent: dict[str, deque[Event]] = {}
        self._last_id: tuple[int, int] = (0, 0)

    def _next_id(self) -> str:
        milliseconds = int(time.time() * 1000)
        last_milliseconds, last_sequence = self._last_id
        self._last_id = (
            (milliseconds, 0) if milliseconds > last_milliseconds else (last_milliseconds, last_sequence + 1)
        )
        return f"{self._last_id[0]}-{self._last_id[1]}"

    def _forget_old(self, now_milliseconds: int) -> None:
        horizon = (now_milliseconds - settings.APERTUR_EVENT_REPLAY_SECONDS * 1000, 0)
        for session_id in list(self._recent):
            kept = self._recent[session_id]
            while kept and event_id_key(kept[0].id) < horizon:
                kept.popleft()
            if not kept:
                del self._recent[session_id]

    def publish(self, event: Event) -> Event:
        # One lock around numbering and hand-off, so every listener sees a session's events in id order.
        with self._lock:
            event = replace(event, id=self._next_id())
            self._forget_old(event_id_key(event.id)[0])
            self._recent.setdefault(event.session_id, deque(maxlen=settings.APERTUR_EVENT_REPLAY_MAX)).append(event)
            self.hub.dispatch(event)
        return event

    def latest_id(self, session_id: str) -> str:
        with self._lock:
            recent = self._recent.get(session_id)
            return recent[-1].id if recent else "0-0"

    async def attach(self, listener: Listener, *, after: str | None) -> None:
        with self._lock:
            self.hub.attach(listener)
            if after is not None:
                for event in self._recent.get(listener.session_id, ()):
                    if event_id_key(event.id) > event_id_key(after) and in_replay_window(event.id):
                        listener._offer(event)
            elif self._recent.get(listener.session_id):
                listener.last_id = self._recent[listener.session_id][-1].id

    async def stop(self) -> None:
        pass


class RedisBus:
    """Across processes: a Redis stream per session plus one doorbell channel."""

    def __init__(self, hub: Hub, url: str) -> None:
        import redis

        self.hub = hub
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._reader: _StreamReader | None = None
        self._reader_lock = threading.Lock()

    @staticmethod
    def stream_key(session_id: str) -> str:
        return f"apertur:events:{session_id}"

    def publish(self, event: Event) -> Event:
        window_ms = settings.APERTUR_EVENT_REPLAY_SECONDS * 1000
        key = self.stream_key(event.session_id)
        minimum_id = int(time.time() * 1000) - window_ms
        with self.client.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"event": event.to_json()}, minid=minimum_id, approximate=True)
            pipe.pexpire(key, window_ms + 60_000)
            pipe.publish(DOORBELL_CHANNEL, event.session_id)
            entry_id, *_ = pipe.execute()
        return replace(event, id=entry_id.decode())

    def latest_id(self, session_id: str) -> str:
        newest = self.client.xrevrange(self.stream_key(session_id), count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def attach(self, listener: Listener, *, after: str | None) -> None:
        reader = self._reader_for(listener.loop)
        await reader.started.wait()
        await reader.attach(listener, after=after)

    def _reader_for(self, loop: asyncio.AbstractEventLoop) -> _StreamReader:
        with self._reader_lock:
            if self._reader is None or self._reader.loop is not loop or self._reader.task.done():
                self._reader = _StreamReader(self, loop)
            return self._reader

    async def stop(self) -> None:
        reader = self._reader
        if reader is not None:
            reader.task.cancel()


class _StreamReader:
    """One per web process: listens for doorbells, and reads each rung session's stream from this process's own
    cursor, handing the events to the hub in stream order."""

    def __init__(self, bus: RedisBus, loop: asyncio.AbstractEventLoop) -> None:
        import redis.asyncio

        self.bus = bus
        self.loop = loop
        # Many waiters attach at once (a page of clients reconnecting): they queue for a few connections instead of
        # opening one each.
        pool = redis.asyncio.BlockingConnectionPool.from_url(bus.url, max_connections=16, timeout=10)
        self.client = redis.asyncio.Redis(connection_pool=pool)
        self.cursors: dict[str, str] = {}
        self.started = asyncio.Event()
        self.task = loop.create_task(self._run())

    async def attach(self, listener: Listener, *, after: str | None) -> None:
        key = self.bus.stream_key(listener.session_id)
        self.bus.hub.attach(listener)
        if listener.session_id not in self.cursors:
            newest = await self.client.xrevrange(key, count=1)
            self.cursors.setdefault(listener.session_id, newest[0][0].decode() if newest else "0-0")
        cursor = self.cursors[listener.session_id]
        if after is not None:
            for entry_id, fields in await self.client.xrange(key, min=f"({after}", max=cursor):
                if in_replay_window(entry_id.decode()):
                    listener._offer(Event.from_json(fields[b"event"], id=entry_id.decode()))
        elif cursor != "0-0":
            listener.last_id = cursor

    async def _read(self, session_id: str) -> None:
        cursor = self.cursors.get(session_id)
        if cursor is None:
            return
        entries = await self.client.xrange(self.bus.stream_key(session_id), min=f"({cursor}")
        for entry_id, fields in entries:
            event = Event.from_json(fields[b"event"], id=entry_id.decode())
            self.cursors[session_id] = event.id
            self.bus.hub.dispatch(event)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(DOORBELL_CHANNEL)
                    # Doorbells may have rung while we were not subscribed: catch up every followed session.
                    for session_id in list(self.cursors):
                        await self._read(session_id)
                    self.started.set()
                    delay = 0.1
                    while True:
                        message = await pubsub.get_message(timeout=30)
                        followed = set(self.bus.hub.sessions())
                        for session_id in [name for name in self.cursors if name not in followed]:
                            del self.cursors[session_id]
                        if message is not None and message["type"] == "message":
                            await self._read(message["data"].decode())
            except asyncio.CancelledError:
                await self.client.aclose()
                raise
            except Exception:
                logger.warning("event bus: lost Redis, reconnecting in %.1f s", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)


# --- the process's bus ----------------------------------------------------------------------------------------

hub = Hub()
_subscribers: list[Callable[[Event], None]] = []


@cache
def bus() -> InProcessBus | RedisBus:
    if settings.REDIS_URL:
        return RedisBus(hub, settings.REDIS_URL)
    return InProcessBus(hub)


def subscribe(callback: Callable[[Event], None]) -> Callable[[], None]:
    """Call `callback` (synchronously, on the publishing thread) with every event this process publishes."""
    _subscribers.append(callback)
    return lambda: _subscribers.remove(callback)


def publish(event: Event) -> Event | None:
    """Number, store and hand out an event. Called by `session_changed` after commit; a failure is logged and
    never fails the change (waiters re-read the database when their wait ends)."""
    try:
        event = bus().publish(event)
    except Exception:
        logger.exception("event bus: could not publish %s for %s", event.name, event.session_id)
        return None
    for callback in list(_subscribers):
        try:
            callback(event)
        except Exception:
            logger.exception("event subscriber %r failed on %s", callback, event.name)
    return event


def latest_id(session_id: str) -> str:
    """The id of the session's newest event still kept ("0-0" when none): listening `after` it from a coroutine
    started later misses nothing published since this call."""
    return bus().latest_id(session_id)


@asynccontextmanager
async def listen(session_id: str, *, after: str | None = None) -> AsyncIterator[Listener]:
    """Attach a listener to a session's events for the block. Attach before reading the database: a change that
    commits after the read is then heard, and one before it is in what was read. With `after`, the events after
    that id still in the replay window come first."""
    listener = Listener(session_id, asyncio.get_running_loop())
    try:
        await bus().attach(listener, after=after)
        yield listener
    finally:
        hub.detach(listener)


def shutdown() -> None:
    """The server is stopping: every waiter answers now instead of holding the shutdown for minutes."""
    hub.close()
