"""The event bus (apertur/events.py, docs/api.md "Live events"), both transports: ids increase per session, a
listener hears what is published after it attached, in order, from any thread; `after` replays exactly the newer
events, once, even when live events arrive during the replay; an id Redis would refuse replays nothing; old events
leave the replay window; an unreachable Redis fails fast; shutdown wakes every listener."""

import asyncio
import os
import socket
import statistics
import threading
import time
from datetime import UTC, datetime

import pytest
import redis

from apertur import events
from apertur.events import Event, Hub, InProcessBus, RedisBus, event_id_key, is_valid_event_id


def event_bus_redis_url() -> str:
    """The configured Redis (CI sets it), else the database after this checkout's APERTUR_TEST_LOCAL_REDIS one
    (each checkout is handed two adjacent databases), else database 14 of the Redis this machine runs."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    local = os.environ.get("APERTUR_TEST_LOCAL_REDIS")
    if not local:
        return "redis://127.0.0.1:6379/14"
    server, _, database = local.rstrip("/").rpartition("/")
    return f"{server}/{int(database or 0) + 1}"


REDIS_URL = event_bus_redis_url()
LARGEST_ID = f"{2**64 - 1}-{2**64 - 1}"


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


@pytest.fixture
def redis_bus(settings):
    settings.APERTUR_EVENT_REPLAY_SECONDS = 300
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield RedisBus(Hub(), REDIS_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()


async def attached(bus, session_id: str, after: str | None = None) -> events.Listener:
    listener = events.Listener(session_id, asyncio.get_running_loop())
    await bus.attach(listener, after=after)
    return listener


async def heard_until_quiet(listener: events.Listener, quiet: float = 0.5) -> list[int]:
    heard = []
    while (item := await listener.next(quiet)) is not None:
        heard.append(item.data["index"])
    return heard


async def started_reader(transport: RedisBus) -> events._StreamReader:
    """This loop's stream reader, subscribed and caught up (so its next reads are the ones a test provokes)."""
    reader = transport._reader_for(asyncio.get_running_loop())
    await reader.started.wait()
    return reader


def test_ids_increase_per_session_and_latest_id_names_the_newest(bus):
    published = [bus.publish(event("sess_a", index=index)) for index in range(5)]
    keys = [event_id_key(item.id) for item in published]
    assert keys == sorted(keys) and len(set(keys)) == 5
    assert bus.latest_id("sess_a") == published[-1].id
    assert bus.latest_id("sess_never") == "0-0"


def test_a_listener_names_the_newest_event_it_starts_after_and_none_on_a_session_without_events(bus):
    # apertur/api/waiting.py keys its shared looks on `last_id`: None means "no event yet", on both transports.
    async def scenario() -> tuple[str | None, str | None]:
        empty = await attached(bus, "sess_empty")
        newest = bus.publish(event("sess_busy"))
        busy = await attached(bus, "sess_busy")
        bus.hub.detach(empty)
        bus.hub.detach(busy)
        return empty.last_id, busy.last_id == newest.id

    assert asyncio.run(scenario()) == (None, True)


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


# --- Last-Event-ID: only what Redis accepts ---------------------------------------------------------------------

MALFORMED_IDS = ["1_0-0", "+1-0", "-1", "1 -0", "5--1", "99999999999999999999999-0", f"{2**64}-0", f"0-{2**64}"]


@pytest.mark.parametrize("malformed", [*MALFORMED_IDS, "", "123", "1-", "-0", " 1-0", "1-0\n", "\u0661-0", "ab-c"])
def test_an_id_redis_would_refuse_is_invalid_and_sorts_before_every_valid_one(malformed):
    assert not is_valid_event_id(malformed)
    assert event_id_key(malformed) < event_id_key("0-0")


@pytest.mark.parametrize("valid", ["0-0", "1-0", "1712345678901-3", LARGEST_ID])
def test_a_stream_id_is_valid_and_orders_by_milliseconds_then_sequence(valid):
    assert is_valid_event_id(valid)
    milliseconds, sequence = valid.split("-")
    assert event_id_key(valid) == (int(milliseconds), int(sequence))


@pytest.mark.parametrize("malformed", MALFORMED_IDS)
def test_a_malformed_after_replays_nothing_and_the_listener_hears_what_follows(bus, malformed):
    bus.publish(event("sess_bad", index=0))

    async def scenario() -> tuple[list[Event], list[int]]:
        listener = await attached(bus, "sess_bad", after=malformed)
        replayed = listener.pending()
        bus.publish(event("sess_bad", index=1))
        live = await heard_until_quiet(listener)
        bus.hub.detach(listener)
        return replayed, live

    assert asyncio.run(scenario()) == ([], [1])


def test_after_the_largest_id_replays_nothing_and_fails_nothing(bus):
    bus.publish(event("sess_max", index=0))

    async def scenario() -> list[Event]:
        listener = await attached(bus, "sess_max", after=LARGEST_ID)
        replayed = listener.pending()
        bus.hub.detach(listener)
        return replayed

    assert asyncio.run(scenario()) == []


def test_a_replay_redis_refuses_is_no_replay_with_one_warning_and_no_traceback(redis_bus, monkeypatch, caplog):
    first = redis_bus.publish(event("sess_refused", index=0))
    redis_bus.publish(event("sess_refused", index=1))

    async def scenario() -> list[int]:
        reader = await started_reader(redis_bus)

        read_stream = reader.client.xrange
        calls = 0

        async def replay_refused(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == 1:
                raise redis.ResponseError("Invalid stream ID specified as stream command argument")
            return await read_stream(*args, **kwargs)

        monkeypatch.setattr(reader.client, "xrange", replay_refused)
        listener = await attached(redis_bus, "sess_refused", after=first.id)
        redis_bus.publish(event("sess_refused", index=2))
        heard = await heard_until_quiet(listener)
        redis_bus.hub.detach(listener)
        return heard

    assert asyncio.run(scenario()) == [2]
    warnings = [record for record in caplog.records if record.name == "apertur.events"]
    assert [record.levelname for record in warnings] == ["WARNING"]
    assert warnings[0].exc_info is None


# --- Redis: replay and live events meet -------------------------------------------------------------------------


def test_a_live_event_arriving_during_the_replay_is_heard_after_the_replayed_ones(redis_bus, monkeypatch):
    first = redis_bus.publish(event("sess_race", index=0))
    redis_bus.publish(event("sess_race", index=1))

    async def scenario() -> list[int]:
        reader = await started_reader(redis_bus)
        read_stream = reader.client.xrange
        calls = 0

        async def slow_first_read(*args, **kwargs):
            # The replay's read: a new event is published and handed out while it is on its way.
            nonlocal calls
            calls += 1
            if calls == 1:
                redis_bus.publish(event("sess_race", index=2))
                await asyncio.sleep(0.5)
            return await read_stream(*args, **kwargs)

        monkeypatch.setattr(reader.client, "xrange", slow_first_read)
        listener = await attached(redis_bus, "sess_race", after=first.id)
        heard = await heard_until_quiet(listener)
        redis_bus.hub.detach(listener)
        return heard

    assert asyncio.run(scenario()) == [1, 2]


def test_an_event_published_while_this_process_starts_following_the_session_is_heard(redis_bus, monkeypatch):
    async def scenario() -> list[int]:
        reader = await started_reader(redis_bus)
        read_newest = reader.client.xrevrange

        async def doorbell_rings_before_the_answer(*args, **kwargs):
            newest = await read_newest(*args, **kwargs)
            redis_bus.publish(event("sess_join", index=0))
            await asyncio.sleep(0.5)  # the reader hears the doorbell before this process follows the session
            return newest

        monkeypatch.setattr(reader.client, "xrevrange", doorbell_rings_before_the_answer)
        listener = await attached(redis_bus, "sess_join")
        heard = await heard_until_quiet(listener)
        redis_bus.hub.detach(listener)
        return heard

    assert asyncio.run(scenario()) == [0]


def test_events_up_to_the_clients_id_are_not_sent_again_when_this_process_has_not_read_them_yet(redis_bus):
    stream = redis.Redis.from_url(REDIS_URL)

    async def scenario() -> list[int]:
        follower = await attached(redis_bus, "sess_lag")  # this process now reads the session's stream
        # Two events reach the stream whose doorbell has not rung here yet; the client got them from another process.
        seen = [
            stream.xadd(RedisBus.stream_key("sess_lag"), {"event": event("sess_lag", index=index).to_json()})
            for index in range(2)
        ]
        listener = await attached(redis_bus, "sess_lag", after=seen[-1].decode())
        redis_bus.publish(event("sess_lag", index=2))  # its doorbell: this process reads all three
        heard = await heard_until_quiet(listener)
        assert await heard_until_quiet(follower) == [0, 1, 2]
        redis_bus.hub.detach(listener)
        redis_bus.hub.detach(follower)
        return heard

    assert asyncio.run(scenario()) == [2]


# --- Redis unreachable ------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_attaching_while_redis_is_unreachable_fails_with_event_bus_unavailable_within_the_timeout(settings):
    settings.APERTUR_EVENT_BUS_CONNECT_TIMEOUT_SECONDS = 0.5
    transport = RedisBus(Hub(), f"redis://127.0.0.1:{closed_port()}/0")

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(events.EventBusUnavailable):
                await asyncio.wait_for(attached(transport, "sess_down"), 10)
        finally:
            await transport.stop()
        return loop.time() - started

    assert asyncio.run(scenario()) < 3


# --- costs that must not grow with the number of sessions -------------------------------------------------------


def test_publishing_stays_cheap_however_many_idle_sessions_are_in_the_replay_window(settings):
    settings.APERTUR_EVENT_REPLAY_SECONDS = 300
    transport = InProcessBus(Hub())
    started = time.perf_counter()
    for index in range(20_000):
        transport.publish(event(f"sess_idle_{index}"))
        assert time.perf_counter() - started < 10, f"publishing slowed down as sessions accumulated ({index})"
    durations = []
    for index in range(50):
        before = time.perf_counter()
        transport.publish(event("sess_busy", index=index))
        durations.append(time.perf_counter() - before)
    assert statistics.median(durations) < 0.005


def test_a_session_idle_past_the_replay_window_is_forgotten_when_another_publishes(settings):
    settings.APERTUR_EVENT_REPLAY_SECONDS = 0
    transport = InProcessBus(Hub())
    transport.publish(event("sess_idle"))
    time.sleep(0.005)
    transport.publish(event("sess_busy"))
    assert transport.latest_id("sess_idle") == "0-0"


def test_the_stream_reader_does_not_list_every_followed_session_on_each_doorbell(redis_bus, monkeypatch):
    listed = 0
    list_sessions = redis_bus.hub.sessions

    def counted() -> list[str]:
        nonlocal listed
        listed += 1
        return list_sessions()

    monkeypatch.setattr(redis_bus.hub, "sessions", counted)

    async def scenario() -> list[int]:
        listener = await attached(redis_bus, "sess_many")
        for index in range(20):
            redis_bus.publish(event("sess_many", index=index))
        heard = await heard_until_quiet(listener)
        redis_bus.hub.detach(listener)
        return heard

    assert asyncio.run(scenario()) == list(range(20))
    assert listed <= 1
