"""Socket.IO live events (docs/api.md "Socket.IO"), against real servers: the official Python client's
`events.subscribe`, and a plain python-socketio client for what the official one does not show (the
acknowledgement's error text, `session:completed`, the polling transport)."""

import os
import queue
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import socketio
from apertur_sdk import Apertur

from tests.conftest import REPO_ROOT, ServerProcess, process_environment
from tests.factories import image_bytes, make_persona

OFFICIAL_EVENTS = ("connected", "error", "close", "image:ready", "image:delivering", "image:delivered", "image:failed")


class Heard:
    """What a client was told, in arrival order; tests await each entry instead of sleeping."""

    def __init__(self) -> None:
        self._arrivals: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.log: list[tuple[str, Any]] = []

    def handler(self, name: str):
        return lambda payload=None: self._arrivals.put((name, payload))

    def next(self, timeout: float = 15) -> tuple[str, Any]:
        try:
            arrival = self._arrivals.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing more within {timeout}s; heard {self.log}") from None
        self.log.append(arrival)
        return arrival

    def until(self, name: str, count: int = 1, timeout: float = 15) -> list[tuple[str, Any]]:
        """Everything heard up to and including the `count`-th `name`."""
        heard: list[tuple[str, Any]] = []
        while sum(1 for arrival_name, _ in heard if arrival_name == name) < count:
            heard.append(self.next(timeout))
        return heard

    def nothing_more(self) -> bool:
        return self._arrivals.empty()


def subscribe(sdk: Apertur, session_id: str, heard: Heard):
    """`sdk.events.subscribe`, with `heard` listening from the first moment. The official client connects and joins
    inside `subscribe()`, so handlers can only be added after the join went out; a refused join is answered within
    milliseconds and would reach no handler (a race in the client, not the server). Until a handler is on, what the
    subscription emits goes to `heard` directly; the client itself is not changed."""
    subscription_class = sys.modules[type(sdk.events).__module__].EventSubscription
    original_emit = subscription_class._emit

    def emit_early(self, event: str, *args: Any) -> None:
        if event in OFFICIAL_EVENTS and not self._handlers.get(event):
            heard.handler(event)(*args)
        else:
            original_emit(self, event, *args)

    subscription_class._emit = emit_early
    try:
        subscription = sdk.events.subscribe(session_id)
        for name in OFFICIAL_EVENTS:
            subscription.on(name, heard.handler(name))
    finally:
        subscription_class._emit = original_emit
    return subscription


def webhook_session(sdk: Apertur, persona, receiver) -> dict:
    destination = sdk.destinations.create(
        str(persona.project.pk),
        type="webhook",
        name="receiver",
        config={"url": f"{receiver.url}/in", "secret": "live-secret"},
    )
    return {**sdk.sessions.create(destination_ids=[destination["id"]]), "destination_id": destination["id"]}


def plain_client(url: str, heard: Heard | None = None, **connect) -> socketio.Client:
    """A python-socketio client on /upload that records every event it is sent."""
    client = socketio.Client(reconnection=False)
    if heard is not None:
        client.on("*", lambda name, payload=None: heard.handler(name)(payload), namespace="/upload")
    client.connect(url, namespaces=["/upload"], socketio_path="/socket.io", wait_timeout=10, **connect)
    return client


def join(client: socketio.Client, payload: Any) -> dict:
    return client.call("session:join", payload, namespace="/upload", timeout=10)


def test_official_client_hears_an_uploads_ready_delivering_and_delivered_in_order(
    live_server_process, webhook_receiver
):
    persona = make_persona("sio-subscriber")
    data = image_bytes()
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session = webhook_session(sdk, persona, webhook_receiver)
        heard = Heard()
        subscription = subscribe(sdk, session["id"], heard)
        try:
            assert heard.next() == ("connected", {"sessionId": session["id"]})
            image_id = sdk.upload.image(session["id"], data, filename="a.jpg")["id"]
            told = heard.until("image:delivered")
        finally:
            subscription.close()
        assert heard.until("close") == [("close", None)]

    destination_id = session["destination_id"]
    assert told == [
        (
            "image:ready",
            {
                "imageId": image_id,
                "imageIndex": 0,
                "filename": "a.jpg",
                "sizeBytes": len(data),
                "mimeType": "image/jpeg",
            },
        ),
        ("image:delivering", {"imageId": image_id, "destinationId": destination_id, "attempt": 1}),
        ("image:delivered", {"imageId": image_id, "destinationId": destination_id, "destinationType": "webhook"}),
    ]
    assert len(webhook_receiver.requests) == 1


def test_official_client_hears_each_failed_attempt_and_the_final_one_last(webhook_receiver, tmp_path, transactional_db):
    webhook_receiver.respond = lambda request: 500
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log", APERTUR_RETRY_DELAYS="0.2,0.2")
    try:
        persona = make_persona("sio-failing")
        with Apertur(api_key=persona.plain_key, base_url=server.url) as sdk:
            session = webhook_session(sdk, persona, webhook_receiver)
            heard = Heard()
            subscription = subscribe(sdk, session["id"], heard)
            try:
                assert heard.next()[0] == "connected"
                image_id = sdk.upload.image(session["id"], image_bytes(), filename="a.jpg")["id"]
                told = heard.until("image:failed", count=3)
            finally:
                subscription.close()
    finally:
        server.stop()

    destination_id = session["destination_id"]
    delivering = [
        ("image:delivering", {"imageId": image_id, "destinationId": destination_id, "attempt": n}) for n in (1, 2, 3)
    ]
    failed = [
        (
            "image:failed",
            {"imageId": image_id, "destinationId": destination_id, "error": payload["error"], "final": final},
        )
        for (_, payload), final in zip([told[2], told[4], told[6]], (False, False, True), strict=True)
    ]
    assert [name for name, _ in told] == ["image:ready"] + ["image:delivering", "image:failed"] * 3
    assert told[1:] == [delivering[0], failed[0], delivering[1], failed[1], delivering[2], failed[2]]
    # Anyone holding the session id may listen: they are not told the destination's own words (docs/api.md "Live
    # events"); key holders read them in the delivery status.
    assert [payload["error"] for _, payload in failed] == [
        "The delivery failed; it will be tried again.",
        "The delivery failed; it will be tried again.",
        "The delivery failed.",
    ]


def test_official_client_joining_an_unknown_session_hears_the_refusal_as_an_error(live_server_process):
    heard = Heard()
    sdk = Apertur(api_key="aptr_live_unused", base_url=live_server_process.url)
    subscription = subscribe(sdk, "sess_01JD00000000000000000000", heard)
    try:
        name, error = heard.next()
    finally:
        subscription.close()
    assert name == "error" and isinstance(error, RuntimeError)
    assert str(error) == "Session not found."


def test_join_is_acknowledged_for_a_session_id_or_an_object_naming_it_and_refused_for_anything_else(
    live_server_process,
):
    persona = make_persona("sio-joiner")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session_id = sdk.sessions.create(long_polling=True)["id"]
    client = plain_client(live_server_process.url)
    try:
        assert join(client, session_id) == {"ok": True}
        assert join(client, {"sessionId": session_id}) == {"ok": True}
        for garbage in [
            "sess_01JD00000000000000000000",
            "../../etc/passwd",
            "sess_" + "A" * 5000,
            42,
            None,
            {"id": session_id},
        ]:
            assert join(client, garbage) == {"ok": False, "error": "Session not found."}, garbage
    finally:
        client.disconnect()


def test_a_connection_follows_at_most_twenty_sessions(live_server_process):
    persona = make_persona("sio-greedy")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session_ids = [sdk.sessions.create(long_polling=True)["id"] for _ in range(21)]
    client = plain_client(live_server_process.url)
    try:
        assert [join(client, session_id) for session_id in session_ids[:20]] == [{"ok": True}] * 20
        assert join(client, session_ids[20]) == {"ok": False, "error": "A connection may follow at most 20 sessions."}
        assert join(client, session_ids[0]) == {"ok": True}  # already followed
    finally:
        client.disconnect()


def test_joining_an_ended_session_is_acknowledged_then_told_it_completed(live_server_process):
    persona = make_persona("sio-late")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session_id = sdk.sessions.create(long_polling=True)["id"]
        sdk.upload.image(session_id, image_bytes(), filename="a.jpg")
        assert httpx.post(f"{live_server_process.url}/api/v1/upload/{session_id}/complete").status_code == 200
    heard = Heard()
    client = plain_client(live_server_process.url, heard)
    try:
        client.emit("session:join", session_id, namespace="/upload", callback=heard.handler("acknowledged"))
        assert heard.next() == ("acknowledged", {"ok": True})
        assert heard.next() == ("session:completed", {"sessionId": session_id, "status": "completed"})
    finally:
        client.disconnect()


def test_polling_client_hears_events_and_session_completed_when_the_phone_is_done(live_server_process):
    persona = make_persona("sio-poller")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session_id = sdk.sessions.create(long_polling=True)["id"]
        heard = Heard()
        client = plain_client(live_server_process.url, heard, transports=["polling"])
        try:
            assert client.transport() == "polling"
            assert join(client, session_id) == {"ok": True}
            image_id = sdk.upload.image(session_id, image_bytes(), filename="a.jpg")["id"]
            name, payload = heard.next()
            assert name == "image:ready" and payload["imageId"] == image_id
            assert httpx.post(f"{live_server_process.url}/api/v1/upload/{session_id}/complete").status_code == 200
            assert heard.next() == ("session:completed", {"sessionId": session_id, "status": "completed"})
        finally:
            client.disconnect()


def test_stopping_the_server_drops_socketio_connections_at_once(transactional_db, tmp_path):
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log")
    try:
        persona = make_persona("sio-restart")
        with Apertur(api_key=persona.plain_key, base_url=server.url) as sdk:
            session_id = sdk.sessions.create(long_polling=True)["id"]
        clients = {}
        for transport in ("websocket", "polling"):
            heard = Heard()
            client = socketio.Client(reconnection=False)
            client.on(
                "disconnect", lambda reason=None, heard=heard: heard.handler("disconnect")(reason), namespace="/upload"
            )
            client.connect(server.url, namespaces=["/upload"], transports=[transport], wait_timeout=10)
            assert join(client, session_id) == {"ok": True}
            clients[transport] = (client, heard)
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=15)
        stopped_in = time.monotonic() - stopping
        for client, heard in clients.values():
            name, reason = heard.next(timeout=10)
            # A dropped transport, not the server's goodbye: a client with reconnection on comes back.
            assert (name, reason) == ("disconnect", client.reason.TRANSPORT_ERROR)
    finally:
        server.stop()
    assert stopped_in < 5
    assert "Application shutdown complete." in (tmp_path / "server.log").read_text()


# --- several web processes -------------------------------------------------------------------------------


def shared_redis(name: str) -> str:
    """The Redis that several processes share: the configured one (CI sets it), else the one this machine runs
    (APERTUR_TEST_LOCAL_REDIS lets two checkouts run their suites at once)."""
    return os.environ.get(name) or os.environ.get("APERTUR_TEST_LOCAL_REDIS", "redis://127.0.0.1:6379/15")


class WorkerProcess:
    """`manage.py rundramatiq`: the delivery worker of a deployment with several processes."""

    def __init__(self, log_path, **environment: str) -> None:
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=process_environment(**environment),
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def two_web_processes_and_a_worker(transactional_db, tmp_path):
    environment = {
        "REDIS_URL": shared_redis("REDIS_URL"),
        "DRAMATIQ_BROKER_URL": shared_redis("DRAMATIQ_BROKER_URL"),
        "APERTUR_SWEEP_INTERVAL_SECONDS": "0.5",
    }
    started = []
    try:
        for name in ("web-a", "web-b"):
            started.append(ServerProcess(with_worker=False, log_path=tmp_path / f"{name}.log", **environment))
        worker = WorkerProcess(tmp_path / "worker.log", **environment)
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop()
        if "worker" in locals():
            worker.stop()


def test_subscribers_on_two_web_processes_each_hear_every_event_once_wherever_it_happened(
    two_web_processes_and_a_worker, webhook_receiver
):
    web_a, web_b = two_web_processes_and_a_worker
    persona = make_persona("sio-cluster")
    with Apertur(api_key=persona.plain_key, base_url=web_b.url) as sdk:
        session = webhook_session(sdk, persona, webhook_receiver)
        heard_on = {web_a.url: Heard(), web_b.url: Heard()}
        subscriptions = []
        try:
            for url, heard in heard_on.items():
                subscriptions.append(subscribe(Apertur(api_key=persona.plain_key, base_url=url), session["id"], heard))
                assert heard.next()[0] == "connected"
            # Uploaded through web process B, delivered by the worker process; the second image is the marker
            # after which a duplicate of the first one's events would have shown.
            image_ids = [sdk.upload.image(session["id"], image_bytes(), filename="a.jpg")["id"]]
            for heard in heard_on.values():
                heard.until("image:delivered")
            image_ids.append(sdk.upload.image(session["id"], image_bytes(), filename="b.jpg")["id"])
            for heard in heard_on.values():
                heard.until("image:delivered")
        finally:
            for subscription in subscriptions:
                subscription.close()

    expected = [
        (name, image_id) for image_id in image_ids for name in ("image:ready", "image:delivering", "image:delivered")
    ]
    for url, heard in heard_on.items():
        assert [(name, payload["imageId"]) for name, payload in heard.log[1:]] == expected, url
