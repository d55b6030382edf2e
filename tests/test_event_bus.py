"""The event bus (apertur/events.py, docs/api.md "Live events"), both transports: ids increase per session, a
listener hears what is published after it attached, in order, from any thread; `after` replays exactly the newer
events; old events leave the replay window; shutdown wakes every listener."""

import asyncio
import os
import threading
import time
from datetime import UTC, datetime

import pytest
import redis

from apertur import events
from apertur.events import Event, Hub, InProcessBus, RedisBus, event_id_key

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"


def event(session_id: str, name: str = "image.accepted", **data) -> Event:
    return Event(session_id=session_id, name=name, changed_at=datetime.now(UTC), data={"status": "uploading", **data})


@pytest.fixture(params=["in-process", "redis"])
def bus(request, settings):
    settings.APERTUR_EVENT_REPLAY_SECONDS = 300
    hub = Hub()
    if request.param == "in-process":
        yield InProcessBus(hub)
        return
    redis.Redis.from_url(REDIS_URL).flushdb()
    transport = RedisBus(hub, REDIS_URL)
    yield transport
    redis.Redis.from_url(REDIS_URL).flushdb()


async def attached(bus, session_id: str, after: str | None = None) -> events.Listener:
    listener = events.Listener(session_id, asyncio.get_running_loop())
    await bus.attach(listener, after=after)
    return listener


def test_ids_increase_per_session_and_latest_id_names_the_newest(bus):
    published = [bus.publish(event("sess_a", index=index)) for index in range(5)]
    keys = [event_id_key(item.id) for item in published]
    assert keys == sorted(keys) and len(set(keys)) == 5
    assert bus.latest_id("sess_a") == published[-1].id
    assert bus.latest_id("sess_never") == "0-0"


def test_a_listener_hears_events_published_from_another_thread_in_order_and_only_its_sessions(bus):
    async def scenario() -> list[Event]:
        listener = await attached(bus, "sess_mine")

        def publish_many() -> None:
            for index in range(20):
                bus.publish(event("sess_other", index=index))
                bus.publish(event("sess_mine", index=index))

        threading.Thread(target=publish_many).start()
        heard = []
        for _ in range(20):
            item = await listener.next(5)
            assert item is not None, "an event never arrived"
            heard.append(item)
        assert await listener.next(0.2) is None
        bus.hub.detach(listener)
        return heard

    heard = asyncio.run(scenario())
    assert [item.data["index"] for item in heard] == list(range(20))
    assert {item.session_id for item in heard} == {"sess_mine"}


def test_after_replays_exactly_the_newer_events_then_live_ones_without_repeats(bus):
    first = [bus.publish(event("sess_r", index=index)) for index in range(4)]

    async def scenario() -> list[int]:
        listener = await attached(bus, "sess_r", after=first[1].id)
        bus.publish(event("sess_r", index=4))
        heard = []
        while (item := await listener.next(1)) is not None:
            heard.append(item.data["index"])
        bus.hub.detach(listener)
        return heard

    assert asyncio.run(scenario()) == [2, 3, 4]


def test_events_older_than_the_replay_window_are_not_replayed(bus, settings):
    settings.APERTUR_EVENT_REPLAY_SECONDS = 0
    bus.publish(event("sess_old", index=0))
    time.sleep(0.005)  # ids are milliseconds: the next one is later than the window of 0 s
    bus.publish(event("sess_old", index=1))

    async def scenario() -> list[int]:
        listener = await attached(bus, "sess_old", after="0-0")
        heard = [item.data["index"] for item in listener.pending()]
        bus.hub.detach(listener)
        return heard

    assert asyncio.run(scenario()) == []


def test_shutdown_wakes_every_listener_at_once(bus):
    async def scenario() -> tuple[bool, float]:
        listener = await attached(bus, "sess_s")
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.1, bus.hub.close)
        item = await listener.next(30)
        return item is None and listener.closing, loop.time() - started

    woken, waited = asyncio.run(scenario())
    assert woken and waited < 2


def test_a_failing_transport_never_fails_the_change(monkeypatch, caplog):
    class Broken:
        def publish(self, item):
            raise redis.ConnectionError("down")

    monkeypatch.setattr(events, "bus", lambda: Broken())
    assert events.publish(event("sess_x")) is None
    assert "could not publish" in caplog.text
