"""Idle waiters hold neither a database connection nor a thread (docs/deployment.md "Long polls and event
streams"): 200 of them (event streams and pollFrom polls) on one live server, counted from outside, then all woken by
one upload."""

import asyncio
import os
import statistics
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import ServerProcess, database_url
from tests.factories import image_bytes, make_persona, wait_until

WAITERS = 200


SERVER_NAME = "apertur-idle-waiters"


@pytest.fixture
def server(transactional_db, tmp_path):
    """The live server, its PostgreSQL connections named so they can be told from this test's own."""
    url = database_url()
    if connection.vendor == "postgresql":
        url += f"?application_name={SERVER_NAME}"
    process = ServerProcess(with_worker=True, log_path=tmp_path / "server.log", DATABASE_URL=url)
    yield process
    process.stop()


def database_connections(server_pid: int) -> int:
    """Connections the server holds to the test database: PostgreSQL backends it opened, or, on SQLite, its open
    descriptors of the database file (and its -wal and -shm companions)."""
    if connection.vendor == "postgresql":
        with psycopg.connect(dbname="postgres", host="127.0.0.1", user=connection.settings_dict["USER"]) as admin:
            return admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (SERVER_NAME,)
            ).fetchone()[0]
    database_file = os.path.realpath(settings.DATABASES["default"]["NAME"])
    descriptors = Path(f"/proc/{server_pid}/fd")
    count = 0
    for descriptor in descriptors.iterdir():
        try:
            if os.path.realpath(descriptor.readlink()).startswith(database_file):
                count += 1
        except OSError:
            continue
    return count


def settled_database_connections(server_pid: int) -> int:
    """The median of a few looks: the sweeper and the worker open and close connections of their own briefly; a
    waiter holding one would hold it through every look."""
    looks = []
    for _ in range(7):
        looks.append(database_connections(server_pid))
        time.sleep(0.15)
    return statistics.median(looks)


def threads(server_pid: int) -> int:
    status = Path(f"/proc/{server_pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_two_hundred_idle_waiters_hold_no_connection_or_thread_and_all_wake_on_an_upload(server):
    persona = make_persona("crowd")
    auth = {"Authorization": f"Bearer {persona.plain_key}"}
    created = httpx.post(f"{server.url}/api/v1/upload-sessions", json={"long_polling": True}, headers=auth)
    session_id = created.json()["id"]
    status = httpx.get(f"{server.url}/api/v1/upload-sessions/{session_id}/delivery-status", headers=auth).json()
    pid = server.process.pid
    time.sleep(1)  # let start-up work (first requests, the sweeper's first runs) settle before the baseline
    connections_before, threads_before = settled_database_connections(pid), threads(pid)

    async def crowd() -> tuple[list[float], dict]:
        limits = httpx.Limits(max_connections=WAITERS + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=60, limits=limits) as client:
            parked = 0
            parked_all = asyncio.Event()
            woken: list[float] = []

            async def stream() -> None:
                nonlocal parked
                async with client.stream("GET", f"/api/v1/sessions/{session_id}/events") as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line.startswith("event: connected"):
                            parked += 1
                            if parked == WAITERS // 2:
                                parked_all.set()
                        elif line.startswith("event: image:ready"):
                            woken.append(time.monotonic())
                            return

            async def poll_from() -> None:
                response = await client.get(
                    f"/api/v1/upload-sessions/{session_id}/delivery-status",
                    params={"pollFrom": status["lastChanged"]},
                )
                assert response.status_code == 200 and response.json()["images"]
                woken.append(time.monotonic())

            streams = [asyncio.create_task(stream()) for _ in range(WAITERS // 2)]
            polls = [asyncio.create_task(poll_from()) for _ in range(WAITERS // 2)]
            await asyncio.wait_for(parked_all.wait(), 30)
            # The polls give no sign when they are parked: their arrival (a key lookup each, in a pool thread that
            # closes its connection) may still be going on. Wait for the connections to settle while all 200 wait:
            # a waiter that held one would keep the count up until the deadline.
            deadline = time.monotonic() + 20
            while True:
                connections = await asyncio.to_thread(settled_database_connections, pid)
                if connections <= connections_before + 2 or time.monotonic() > deadline:
                    break
            assert not woken, "nothing has woken the waiters yet"
            counts = {"connections": connections, "threads": threads(pid)}
            uploaded_at = time.monotonic()
            upload = await client.post(
                f"/api/v1/upload/{session_id}/images", files={"file": ("a.jpg", image_bytes(), "image/jpeg")}
            )
            assert upload.status_code == 201
            await asyncio.wait_for(asyncio.gather(*streams, *polls), 30)
            return [moment - uploaded_at for moment in woken], counts

    latencies, while_waiting = asyncio.run(crowd())
    assert len(latencies) == WAITERS
    assert while_waiting["connections"] <= connections_before + 2, (connections_before, while_waiting)
    assert while_waiting["threads"] <= threads_before + 8, (threads_before, while_waiting)
    assert max(latencies) < 5
    wait_until(lambda: settled_database_connections(pid) <= connections_before + 2, timeout=10)
