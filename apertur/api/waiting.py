"""Endpoints that wait for a session to change (docs/api.md "Live events"): long polls and `pollFrom`.

Such an endpoint is an ordinary DRF view for everything that touches the database (authentication, rate limit,
validation, the first look), run in a pool thread whose connection is closed afterwards. When it has to wait it
returns a `WaitResponse`; `waiting_view` then waits as a coroutine on the session's events (no thread, no
database connection held) and, on each wake, runs the view's `check` in a pool thread again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, connections
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.urls import Resolver404, resolve
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apertur import events
from apertur.api.errors import error_response
from apertur.errors import AppError

T = TypeVar("T")


def _closing_connections(function: Callable[..., T]) -> Callable[..., T]:
    def run(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            # The pool thread goes back idle: so does its connection (an idle waiter holds none).
            connections.close_all()

    return run


async def db(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run database work off the event loop, in a pool thread that keeps no connection afterwards."""
    if getattr(settings, "APERTUR_WAIT_ON_CALLING_THREAD", False):
        # Tests only: the Django test client calls from a thread holding the test's transaction; run there.
        return await sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
    return await sync_to_async(_closing_connections(function), thread_sensitive=False)(*args, **kwargs)


@dataclass
class Waiting:
    """What a view hands over when it has to wait.

    `check` runs after every wake (an event of the session, or `recheck_after` seconds with none) and returns the
    answer, or None to keep waiting; `on_timeout` answers when `timeout` seconds pass or the server shuts down.
    Both run in a pool thread and may use the database; neither authenticates again.

    When what a waiter looks at is the same for every waiter of the session (a document) and only the decision is
    its own, give `shared_look` (key, loader) and `decide` instead of `check`: one event wakes every such waiter of
    the session, and the loader then runs once for all of them (in a pool thread), `decide(loaded)` per waiter on
    the event loop without touching the database.
    """

    timeout: float
    on_timeout: Callable[[], HttpResponseBase]
    check: Callable[[], HttpResponseBase | None] | None = None
    recheck_after: Callable[[], float | None] = lambda: None
    shared_look: tuple[str, Callable[[], Any]] | None = None
    decide: Callable[[Any], HttpResponseBase | None] | None = None


# Loads in progress or just done, by (shared_look key, the newest event id the waiters heard).
_shared_loads: dict[tuple[str, str], asyncio.Task] = {}
SHARED_LOAD_KEPT_SECONDS = 2.0


async def _shared_load(key: str, event_id: str, loader: Callable[[], Any]) -> Any:
    """One load per (key, event) for every waiter woken by that event: it started after the event's change
    committed, so it shows it to all of them. The load is a task of its own: a waiter whose client goes away
    (its task cancelled) does not take it down for the others."""
    found = _shared_loads.get((key, event_id))
    if found is None:
        loop = asyncio.get_running_loop()
        found = _shared_loads[(key, event_id)] = loop.create_task(db(loader))
        loop.call_later(SHARED_LOAD_KEPT_SECONDS, _shared_loads.pop, (key, event_id), None)
    return await asyncio.shield(found)


class WaitResponse(Response):
    """A view's "not yet": never sent as such (see `waiting_view`)."""

    def __init__(self, waiting: Waiting) -> None:
        super().__init__(status=204)
        self.waiting = waiting


def _rendered(response: HttpResponseBase) -> HttpResponseBase:
    if isinstance(response, Response) and not hasattr(response, "accepted_renderer"):
        # A later answer did not pass through DRF's view: it is JSON, like every API answer.
        response.accepted_renderer = JSONRenderer()
        response.accepted_media_type = "application/json"
        response.renderer_context = {}
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        render()
    return response


def _with_headers_of(response: HttpResponseBase, first: HttpResponseBase) -> HttpResponseBase:
    """The final answer carries the headers the first one got (rate-limit headers, Vary)."""
    for name, value in first.items():
        if name.lower() not in ("content-type", "content-length") and not response.has_header(name):
            response[name] = value
    return response


def waiting_view(view: Callable[..., HttpResponseBase]) -> Callable[..., Any]:
    """An async Django view around a DRF view that may return `WaitResponse`. The URL must name `session_id`."""

    def first_look(request: HttpRequest, **kwargs: Any) -> tuple[HttpResponseBase, float | None]:
        response = _rendered(view(request, **kwargs))
        return response, response.waiting.recheck_after() if isinstance(response, WaitResponse) else None

    def later_look(waiting: Waiting, *, timed_out: bool) -> tuple[HttpResponseBase | None, float | None]:
        if timed_out:
            answer = waiting.on_timeout()
        elif waiting.check is not None:
            answer = waiting.check()
        else:
            answer = waiting.decide(waiting.shared_look[1]())
        if answer is not None:
            return _rendered(answer), None
        return None, waiting.recheck_after()

    async def wait(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        try:
            return await waiting(request, **kwargs)
        except AppError as error:  # a later look, outside DRF's handling (the session was deleted meanwhile)
            return error_response(error.status, error.code, error.message)
        except events.EventBusUnavailable:
            return error_response(503, "EVENTS_UNAVAILABLE", "Live updates are unavailable right now; try again.")

    async def waiting(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        # Attached before the first look: a change committed after it is heard, one before it is in what it read.
        async with events.listen(kwargs["session_id"]) as listener:
            first, recheck_after = await db(first_look, request, **kwargs)
            if not isinstance(first, WaitResponse):
                return first
            waiting = first.waiting
            loop = asyncio.get_running_loop()
            deadline = loop.time() + waiting.timeout
            while not listener.closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                timer = min(remaining, recheck_after) if recheck_after is not None else remaining
                event = await listener.next(timer)
                if listener.closing or (event is None and loop.time() >= deadline):
                    break
                listener.pending()  # one look covers every event queued so far
                if waiting.shared_look is not None and listener.last_id is not None:
                    key, loader = waiting.shared_look
                    try:
                        loaded = await asyncio.wait_for(
                            _shared_load(key, listener.last_id, loader), max(deadline - loop.time(), 0.1)
                        )
                    except TimeoutError:
                        break
                    answer = waiting.decide(loaded)
                    answer = _rendered(answer) if answer is not None else None
                else:
                    answer, recheck_after = await db(later_look, waiting, timed_out=False)
                if answer is not None:
                    return _with_headers_of(answer, first)
            answer, _ = await db(later_look, waiting, timed_out=True)
            return _with_headers_of(answer, first)

    wait.csrf_exempt = True  # API keys, not cookies (as DRF's views)
    _describe_as(wait, view)
    return waits(wait)


class StreamResponse(Response):
    """A view's "stream this": `stream()` makes the body, an async iterator of bytes (see `streaming_view`)."""

    def __init__(self, stream: Callable[[], AsyncIterator[bytes]], *, content_type: str) -> None:
        super().__init__(status=200)
        self.stream = stream
        self.stream_content_type = content_type


def streaming_view(view: Callable[..., HttpResponseBase]) -> Callable[..., Any]:
    """An async Django view around a DRF view that may return `StreamResponse`: the checks run in a pool thread,
    the stream as a coroutine (no thread, no database connection while it lasts)."""

    async def respond(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        first = await db(lambda: _rendered(view(request, **kwargs)))
        if not isinstance(first, StreamResponse):
            return first
        response = StreamingHttpResponse(first.stream(), content_type=first.stream_content_type)
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return _with_headers_of(response, first)

    respond.csrf_exempt = True
    _describe_as(respond, view)
    return waits(respond)


def _describe_as(wrapper: Callable[..., Any], view: Callable[..., Any]) -> None:
    """The wrapper stands for the DRF view it wraps: `view_class` for the route tests, `cls` and `initkwargs` for the
    OpenAPI schema (drf-spectacular lists the DRF views it finds in the URLs)."""
    wrapper.view_class = getattr(view, "view_class", None)
    wrapper.cls = getattr(view, "cls", None)
    wrapper.initkwargs = getattr(view, "initkwargs", {})


def waits(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an async view as one that waits: `waiting_handler` serves it."""
    view.waits = True
    return view


class WaitingHandler(ASGIHandler):
    """Django's ASGI handler for the views that wait, with no middleware and no per-request thread.

    Django runs every request in its own thread-sensitive context, and middleware written for sync code start a
    thread in it that lives as long as the request: one idle thread per waiter. These endpoints need none of the
    middleware (API keys, no cookies, no CSRF), so they skip them, and whatever little Django runs thread-sensitive
    for them (signals, closing the response) goes to its one shared thread.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def serves(self, scope: dict) -> bool:
        try:
            match = resolve(scope["path"])
        except Resolver404:
            return False
        return getattr(match.func, "waits", False)

    async def __call__(self, scope, receive, send) -> None:
        await self.handle(scope, receive, send)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        try:
            # What CommonMiddleware would have checked: the Host header against ALLOWED_HOSTS (DNS rebinding).
            request.get_host()
        except DisallowedHost:
            response = error_response(400, "VALIDATION_ERROR", "The Host header names no host this server serves.")
        else:
            response = await super().run_get_response(request)
        # What SecurityMiddleware and XFrameOptionsMiddleware would have added.
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY or "same-origin")
        response.setdefault("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY or "same-origin")
        response.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response


waiting_handler = WaitingHandler()
