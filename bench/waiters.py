"""Benchmark: N idle waiters on one web process, then uploads wake them, session by session.

Starts its own server (`manage.py apertur_run` on a scratch database; PostgreSQL/Redis when DATABASE_URL/REDIS_URL
are set), opens --waiters connections mixed across the kinds in --kinds (Server-Sent Events streams, `pollFrom`
polls, held polls) over sessions of --per-session waiters each, waits until every one is parked, then measures the
server process's RSS, threads and database connections, uploads one image into each of --uploads sessions in turn and
records how long after each change its waiters hear of it (the change's time as the answer states it: an event id,
`lastChanged`, `created_at`; same machine, same clock). Prints a table, then one JSON line.

    .venv/bin/python bench/waiters.py --waiters 2000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/apertur_bench REDIS_URL=redis://127.0.0.1:6379/9 \
        DRAMATIQ_BROKER_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/waiters.py --waiters 2000

Clients are raw asyncio sockets (a few KB each), so the client side does not distort the server's numbers.
"""

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upload_and_deliver import free_port, jpeg, migrate_and_bootstrap, percentile, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent
APPLICATION_NAME = "apertur-bench-waiters"
VERBOSE = "--verbose" in sys.argv


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def database_connections(pid: int, database_file: Path) -> int:
    if "postgres" in os.environ.get("DATABASE_URL", ""):
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
            rows = connection.execute(
                "SELECT state, backend_start, state_change, left(query, 80) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchall()
            if VERBOSE:
                for row in rows:
                    print("  connection:", *row)
            return len(rows)
    count = 0
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if str(descriptor.readlink()).startswith(str(database_file)):
                count += 1
        except OSError:
            continue
    return count


async def open_waiter(port: int, request: bytes, parked_marker: bytes | None):
    """Send one request; return (reader, writer, what was read) once parked (the marker seen, or at once for polls
    that answer nothing until they wake)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    buffer = b""
    if parked_marker is not None:
        while parked_marker not in buffer:
            chunk = await reader.read(4096)
            if not chunk:
                raise RuntimeError(f"closed before parking: {buffer[:200]!r}")
            buffer += chunk
    return reader, writer, buffer


# When the change happened, as the answer tells it (same machine, same clock): an event id is its publication time
# in milliseconds; lastChanged and created_at are the change's own time.
EVENT_TIME = {
    "sse": (b"event: image:ready", re.compile(rb"id: (\d+)-\d+\nevent: image:ready"), lambda value: int(value) / 1000),
    "poll_from": (b'"lastChanged"', re.compile(rb'"lastChanged":"([^"]+)"'), lambda value: iso_seconds(value)),
    "held_poll": (b'"download_url"', re.compile(rb'"created_at":"([^"]+)"'), lambda value: iso_seconds(value)),
}


def iso_seconds(value: bytes) -> float:
    return datetime.fromisoformat(value.decode().replace("Z", "+00:00")).timestamp()


async def wait_woken(kind: str, reader, writer, buffer: bytes, request: bytes) -> float:
    """Seconds from the change to this waiter hearing of it. A held poll that times out (204, at most 30 s) asks
    again on the same connection, as a pulling client does."""
    marker, pattern, to_seconds = EVENT_TIME[kind]
    while marker not in buffer or pattern.search(buffer) is None:
        if kind == "held_poll" and buffer.startswith(b"HTTP/1.1 204") and buffer.endswith(b"\r\n\r\n"):
            buffer = b""
            writer.write(request)
            await writer.drain()
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError(f"closed before waking: {buffer[-300:]!r}")
        buffer += chunk
    heard = time.time()
    return heard - to_seconds(pattern.search(buffer).group(1))


async def crowd(options, port: int, key: str, sessions: list[tuple[str, str]], server_pid: int, database_file):
    auth = f"Authorization: Bearer {key}\r\n"
    host = f"Host: 127.0.0.1:{port}\r\n"

    def request(kind: str, session_id: str, last_changed: str) -> tuple[bytes, bytes | None]:
        if kind == "sse":
            return f"GET /api/v1/sessions/{session_id}/events HTTP/1.1\r\n{host}{auth}\r\n".encode(), b"connected"
        if kind == "poll_from":
            path = f"/api/v1/upload-sessions/{session_id}/delivery-status?pollFrom={last_changed}"
        else:
            path = f"/api/v1/sessions/{session_id}/poll?timeout=30"
        return f"GET {path} HTTP/1.1\r\n{host}{auth}\r\n".encode(), None

    # Every waiter of a session hears of its upload, but an image goes to one held poll only: one per session (a
    # session's puller), the others mixed from the remaining kinds.
    kinds = options.kinds.split(",")
    spread = [kind for kind in kinds if kind != "held_poll"] or ["held_poll"]
    plan = []
    for index in range(options.waiters):
        session_number, place = divmod(index, options.per_session)
        kind = "held_poll" if place == 0 and "held_poll" in kinds else spread[place % len(spread)]
        plan.append((kind, sessions[session_number % len(sessions)]))
    waiters = []
    for start in range(0, len(plan), 100):  # in batches, as clients would arrive, not a SYN flood
        batch = plan[start : start + 100]
        opened = await asyncio.gather(*(open_waiter(port, *request(kind, *session)) for kind, session in batch))
        for (kind, session), (reader, writer, buffer) in zip(batch, opened, strict=True):
            # Listening from the start: a held poll that times out asks again at once.
            heard = asyncio.create_task(wait_woken(kind, reader, writer, buffer, request(kind, *session)[0]))
            waiters.append((session[0], writer, heard))
    # Polls have no "parked" marker: their first looks (authentication, the first read) may still be running.
    # Parked is when the server's database connections have stayed the same for a second.
    looks: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(looks) < 5 or len(set(looks[-5:])) > 1):
        await asyncio.sleep(0.2)
        looks.append(database_connections(server_pid, database_file))
    parked = {"rss_mb": rss_mb(server_pid), "threads": threads(server_pid), "db_connections": looks[-1]}

    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=60) as client:
        for session_id, _ in sessions[: options.uploads]:
            wakes = [heard for waited_on, _, heard in waiters if waited_on == session_id]
            response = await client.post(
                f"http://127.0.0.1:{port}/api/v1/upload/{session_id}/images",
                files={"file": ("a.jpg", jpeg(1, size=(64, 48)), "image/jpeg")},
            )
            response.raise_for_status()
            heard = await asyncio.wait_for(asyncio.gather(*wakes), 60)
            if options.verbose:
                print(f"upload into {session_id}: {len(heard)} woken, slowest {max(heard) * 1000:.1f} ms")
            latencies += heard
    for _, writer, heard in waiters:
        heard.cancel()
        writer.close()
    return parked, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=2000)
    parser.add_argument("--kinds", default="sse,poll_from,held_poll", help="comma-separated: sse, poll_from, held_poll")
    parser.add_argument("--per-session", type=int, default=20, help="waiters per session")
    parser.add_argument("--uploads", type=int, default=10, help="sessions uploaded into, one after the other")
    parser.add_argument("--verbose", action="store_true", help="the slowest wake of each upload")
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="apertur-bench-"))
    port = free_port()
    environment = {
        **os.environ,
        "APERTUR_VAR_DIR": str(scratch),
        "APERTUR_LOG_LEVEL": "WARNING",
        "APERTUR_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "APERTUR_RATE_LIMIT_SESSION_READ": "1000000",
        "APERTUR_RATE_LIMIT_UPLOAD_PAGE": "1000000",
        "APERTUR_RATE_LIMIT_SESSION_CREATE": "1000000",
    }
    if "postgres" in environment.get("DATABASE_URL", ""):
        separator = "&" if "?" in environment["DATABASE_URL"] else "?"
        environment["DATABASE_URL"] += f"{separator}application_name={APPLICATION_NAME}"
    credentials = migrate_and_bootstrap(environment)
    logs = (scratch / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "apertur_run", "--port", str(port)],
        cwd=REPO,
        env=environment,
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base)
        auth = {"Authorization": f"Bearer {credentials['api_key']}"}
        api = httpx.Client(base_url=f"{base}/api/v1", headers=auth, timeout=60)
        sessions = []
        for _ in range(max(1, options.waiters // options.per_session)):
            session_id = api.post("/upload-sessions", json={"long_polling": True}).json()["id"]
            sessions.append(
                (session_id, api.get(f"/upload-sessions/{session_id}/delivery-status").json()["lastChanged"])
            )
        # Warm-up: the first upload starts the decoder processes.
        warm = api.post("/upload-sessions", json={"long_polling": True}).json()["id"]
        httpx.post(
            f"{base}/api/v1/upload/{warm}/images", files={"file": ("w.jpg", jpeg(2, size=(64, 48)), "image/jpeg")}
        ).raise_for_status()
        time.sleep(1)
        idle = {"rss_mb": rss_mb(server.pid), "threads": threads(server.pid)}
        idle["db_connections"] = database_connections(server.pid, scratch / "apertur.sqlite3")
        parked, wakes = asyncio.run(
            crowd(options, port, credentials["api_key"], sessions, server.pid, scratch / "apertur.sqlite3")
        )
        result = {
            "benchmark": "waiters",
            "database": "postgresql" if "postgres" in os.environ.get("DATABASE_URL", "") else "sqlite",
            "event_bus": "redis" if os.environ.get("REDIS_URL") else "in-process",
            "waiters": options.waiters,
            "kinds": options.kinds,
            "waiters_per_session": options.per_session,
            "uploads": min(options.uploads, len(sessions)),
            "rss_mb_idle": round(idle["rss_mb"], 1),
            "rss_mb_parked": round(parked["rss_mb"], 1),
            "rss_kb_per_waiter": round((parked["rss_mb"] - idle["rss_mb"]) * 1024 / options.waiters, 1),
            "threads_idle": idle["threads"],
            "threads_parked": parked["threads"],
            "db_connections_idle": idle["db_connections"],
            "db_connections_parked": parked["db_connections"],
            "wake_ms_p50": round(percentile(wakes, 0.5) * 1000, 1),
            "wake_ms_p99": round(percentile(wakes, 0.99) * 1000, 1),
            "wake_ms_max": round(max(wakes) * 1000, 1),
            "woken": len(wakes),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        }
        for key, value in result.items():
            print(f"{key:24} {value}")
        print(json.dumps(result))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
