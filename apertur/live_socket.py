"""Live events over Socket.IO (docs/api.md "Socket.IO"): path `/socket.io`, namespace `/upload`, a room per
session joined with `session:join`, the events of `sessions_app.live.client_events`.

How an event reaches the sockets (docs/deployment.md "Socket.IO"): `forward`, an `apertur.events` subscriber,
runs on the thread that published the event, in the process that published it (a web request, a delivery
worker), and emits it exactly once:
- with `REDIS_URL`, through a write-only Socket.IO Redis manager: every web process's server (python-socketio's
  Redis manager) hears it and emits it to the members of the session's room it holds;
- without, to this process's server, on its event loop, one event after another in the order published.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from contextlib import suppress
from functools import cache
from typing import Any

import socketio
from django.conf import settings

from apertur import events
from apertur.api.waiting import db
from apertur.errors import AppError
from sessions_app.live import client_events
from sessions_app.selectors import session_public
from sessions_app.status import displayed_status

logger = logging.getLogger(__name__)

NAMESPACE = "/upload"
CHANNEL = "apertur:socketio"  # the Socket.IO managers' Redis channel (the event bus has its own)
MAX_SESSIONS_PER_CONNECTION = 20
MAX_MESSAGE_BYTES = 16 * 1024  # a polling POST; clients only send `session:join`
LISTENING_TIMEOUT_SECONDS = 5
SESSION_ID = re.compile(r"sess_[0-9A-Z]{26}")  # apertur.ids.new_session_id

NOT_FOUND = "Session not found."
TOO_MANY = f"A connection may follow at most {MAX_SESSIONS_PER_CONNECTION} sessions."
UNAVAILABLE = "Live events are unavailable right now."

Told = list[tuple[str, dict[str, Any]]]


class _RedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager, which also says when it is subscribed: until then an event published
    elsewhere would not reach this process, so a join waits for it (an event after the acknowledgement is
    never lost)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, channel=CHANNEL, redis_options={"socket_connect_timeout": 5})
        self.listening = asyncio.Event()

    def _redis_connect(self) -> None:
        super()._redis_connect()
        self.pubsub = self.redis.pubsub()  # with the subscription confirmations, which set `listening`

    async def _redis_listen_with_retries(self):
        async for message in super()._redis_listen_with_retries():
            if message["type"] == "subscribe":
                self.listening.set()
            yield message


class _Server(socketio.AsyncServer):
    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        """python-engine.io leaves a polling client's waiting request open when its connection closes (until
        the 25 s ping), which holds the client's own `disconnect()` and a server's shutdown: answer it now.
        Scheduled, so that a goodbye packet queued by this same close goes out first."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            asyncio.get_running_loop().call_soon(socket.queue.put_nowait, None)
        await super()._handle_eio_disconnect(eio_sid, reason)


def _client_manager() -> socketio.AsyncManager:
    return _RedisManager(settings.REDIS_URL) if settings.REDIS_URL else socketio.AsyncManager()


server = _Server(
    async_mode="asgi",
    client_manager=_client_manager(),
    # Anonymous by design: the session id is the capability and no cookie is read, so any origin may connect
    # (a customer's page, or a client behind a proxy that does not forward the scheme).
    cors_allowed_origins="*",
    max_http_buffer_size=MAX_MESSAGE_BYTES,
    logger=False,
    engineio_logger=False,
)


def asgi_application(other: Callable[..., Any]) -> socketio.ASGIApp:
    """Socket.IO at /socket.io; everything else, lifespan included, goes to `other`."""
    return socketio.ASGIApp(server, other_asgi_app=other, socketio_path="socket.io")


# --- joining ---------------------------------------------------------------------------------------------


def _session_id_of(payload: Any) -> str | None:
    """The id a client sent (the id itself, or `{"sessionId": id}`), when it can be one."""
    if isinstance(payload, dict):
        payload = payload.get("sessionId")
    if isinstance(payload, str) and SESSION_ID.fullmatch(payload):
        return payload
    return None


def _session_status(session_id: str) -> tuple[str, bool] | None:
    """(status, whether the session has ended), or None for an unknown session."""
    try:
        session = session_public(session_id=session_id)
    except AppError:
        return None
    return displayed_status(session), session.ended_at is not None


async def _listening() -> bool:
    manager = server.manager
    if not isinstance(manager, _RedisManager):
        return True
    try:
        await asyncio.wait_for(manager.listening.wait(), LISTENING_TIMEOUT_SECONDS)
    except TimeoutError:
        return False
    return True


@server.on("connect", namespace=NAMESPACE)
async def _connect(sid: str, environ: dict, auth: Any = None) -> bool:
    if not settings.REDIS_URL:
        _local_emitter()  # from now on, what this process publishes is emitted here
    return True


@server.on("session:join", namespace=NAMESPACE)
async def _session_join(sid: str, payload: Any = None) -> dict[str, Any]:
    """Enter the session's room. The room is entered before the session is read, so nothing that happens after
    the read is missed; an event of those few milliseconds may come just before the acknowledgement. A session
    that has ended may be joined too (a retried delivery would be told): it is told `session:completed` at once.
    """
    session_id = _session_id_of(payload)
    if session_id is None:
        return {"ok": False, "error": NOT_FOUND}
    if not await _listening():
        return {"ok": False, "error": UNAVAILABLE}
    joined = [room for room in server.rooms(sid, namespace=NAMESPACE) if room != sid]
    if session_id in joined:
        return {"ok": True}
    if len(joined) >= MAX_SESSIONS_PER_CONNECTION:
        return {"ok": False, "error": TOO_MANY}
    await server.enter_room(sid, session_id, namespace=NAMESPACE)
    found = await db(_session_status, session_id)
    if found is None:
        await server.leave_room(sid, session_id, namespace=NAMESPACE)
        return {"ok": False, "error": NOT_FOUND}
    status, ended = found
    if ended:
        # Runs once this handler has returned and its acknowledgement is queued: the ack comes first.
        telling = asyncio.get_running_loop().create_task(_tell_ended(sid, session_id, status))
        _telling.add(telling)  # a task nobody references may be collected before it runs
        telling.add_done_callback(_telling.discard)
    return {"ok": True}


_telling: set[asyncio.Task] = set()


async def _tell_ended(sid: str, session_id: str, status: str) -> None:
    data = {"sessionId": session_id, "status": status}
    await server.emit("session:completed", data, to=sid, namespace=NAMESPACE, ignore_queue=True)


# --- emitting what this process publishes ----------------------------------------------------------------


class _LocalEmitter:
    """Without Redis: events published on any thread of this process, emitted on the server's loop one at a time
    (python-socketio's emit must not run concurrently), in the order they were published."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Told]] = asyncio.Queue()
        self.task = loop.create_task(self._run())

    def put(self, session_id: str, told: Told) -> None:
        with suppress(RuntimeError):  # the loop has closed: nobody is listening any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (session_id, told))

    async def _run(self) -> None:
        while True:
            session_id, told = await self.queue.get()
            for name, data in told:
                try:
                    await server.emit(name, data, room=session_id, namespace=NAMESPACE)
                except Exception:
                    logger.exception("socket.io: could not emit %s to %s", name, session_id)


_local: _LocalEmitter | None = None


def _local_emitter() -> _LocalEmitter:
    global _local
    loop = asyncio.get_running_loop()
    if _local is None or _local.loop is not loop:
        _local = _LocalEmitter(loop)
    return _local


@cache
def _redis_emitter() -> socketio.RedisManager:
    return socketio.RedisManager(
        settings.REDIS_URL,
        channel=CHANNEL,
        write_only=True,
        logger=logger,
        redis_options={"socket_timeout": 5, "socket_connect_timeout": 5},
    )


def forward(event: events.Event) -> None:
    """An `apertur.events` subscriber: emit what clients are told of `event` to its session's room."""
    told = client_events(event)
    if not told:
        return
    if settings.REDIS_URL:
        emitter = _redis_emitter()
        for name, data in told:
            emitter.emit(name, data, namespace=NAMESPACE, room=event.session_id)
    elif _local is not None:
        _local.put(event.session_id, told)


# --- shutting down ---------------------------------------------------------------------------------------


async def shutdown() -> None:
    """The server is stopping: drop every connection now, as a lost connection, not with Socket.IO's goodbye (a
    told client stops reconnecting; a dropped one reconnects, to another process or to this one restarted, and
    the official client joins its session again). A polling client's waiting request is answered at once: it
    would otherwise hold the shutdown for up to 25 s. Called twice (before uvicorn waits for connections, and at
    the lifespan's end); python-engine.io's own shutdown fails the second time."""
    global _stopped
    for socket in list(server.eio.sockets.values()):
        socket.queue.put_nowait(None)  # engine.io's own "stop waiting" for a poll, and for a websocket's writer
        with suppress(Exception):
            await socket.close(wait=False, abort=True)
    if not _stopped:
        _stopped = True
        await server.shutdown()


_stopped = False
