"""Benchmark: the CPU cost of one read of GET …/delivery-status (docs/api.md "Delivery status").

In one process, on a scratch database (SQLite under a temporary var dir; PostgreSQL if DATABASE_URL is set, which
must name a database this script may fill; then set APERTUR_VAR_DIR too, the same for every run on that database,
since its keys encrypt the secrets stored there), makes a session with --images photos, each with a delivery to
every one of --destinations destinations in mixed states (pending with a next try, delivering, delivered, failed
with an error), then reads its delivery status --calls times through Django's test client, as a polling client
would. It reports the process's CPU time and the wall time per read (the whole request: authentication, rate
limit, queries, document, JSON; with SQLite the database's own work is in the process too) and SQL queries per
read. No server, worker or broker runs.

    .venv/bin/python bench/delivery_status.py
    .venv/bin/python bench/delivery_status.py --images 10 --calls 500
    .venv/bin/python bench/delivery_status.py --repo ../other    # the code of another checkout (A/B)
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def setup_django(repo: Path) -> None:
    sys.path.insert(0, str(repo))
    os.environ.setdefault("APERTUR_VAR_DIR", tempfile.mkdtemp(prefix="apertur-delivery-status-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apertur.settings")
    os.environ["APERTUR_RATE_LIMIT_SESSION_READ"] = str(10**9)  # the benchmark polls far faster than a client may
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def fill(images: int, destinations: int) -> tuple[str, str]:
    """A session with `images` photos, each delivered to `destinations` destinations; returns (session id, API key)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from delivery.models import Delivery
    from destinations.services import destination_create
    from projects.services import api_key_create, project_create
    from sessions_app.models import Image
    from sessions_app.services import session_create

    user = get_user_model().objects.create_user(username=f"bench-{time.time_ns()}", password="x" * 12)
    project = project_create(name="Delivery status benchmark", owner=user)
    api_key, plain_key = api_key_create(project=project, label="bench")
    targets = [
        destination_create(
            project=project,
            type="webhook",
            name=f"Receiver {number}",
            config={"url": f"http://127.0.0.1:9/hook/{number}", "secret": "s" * 24},
        )
        for number in range(destinations)
    ]
    # 100 is the most a session may take; the photos below are written directly, past that limit when asked.
    session = session_create(api_key=api_key, destination_ids=[str(target.pk) for target in targets], max_images=100)
    now = timezone.now()
    photos = Image.objects.bulk_create(
        Image(
            session=session,
            index=index,
            filename=f"IMG_{index:04}.jpg",
            mime_type="image/jpeg",
            extension="jpg",
            size_bytes=1_100_000 + index,
            width=4032,
            height=3024,
            sha256="0" * 64,
            staged_name=f"staging/{session.pk}/{index}.jpg",
            created_at=now,
        )
        for index in range(images)
    )
    states = [
        {"status": Delivery.Status.DELIVERED, "attempts": 1, "delivered_at": now},
        {
            "status": Delivery.Status.PENDING,
            "attempts": 1,
            "next_retry_at": now + timedelta(seconds=30),
            "last_error": "HTTP 503",
        },
        {"status": Delivery.Status.DELIVERING, "attempts": 1},
        {"status": Delivery.Status.FAILED, "attempts": 5, "last_error": "HTTP 404 from the receiver"},
    ]
    Delivery.objects.bulk_create(
        Delivery(image=photo, destination=target, **states[(number + column) % len(states)])
        for number, photo in enumerate(photos)
        for column, target in enumerate(targets)
    )
    return session.pk, plain_key


def measure(session_id: str, key: str, calls: int) -> dict:
    from django.db.backends.signals import connection_created
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1")
    url = f"/api/v1/upload-sessions/{session_id}/delivery-status"
    first = client.get(url)  # warms caches and records the key's lastUsedAt, written at most once a minute
    assert first.status_code == 200, first.content
    # The view reads in a pool thread on a connection of its own (apertur/api/waiting.py), so count on every
    # connection opened from now on.
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    def counting(sender, connection, **kwargs) -> None:
        connection.execute_wrappers.append(count)

    connection_created.connect(counting)
    assert client.get(url).status_code == 200
    connection_created.disconnect(counting)
    durations = []
    cpu_started = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        response = client.get(url)
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200
    cpu_seconds = time.process_time() - cpu_started
    return {
        "cpu_ms_per_call": round(cpu_seconds / calls * 1000, 2),
        "ms_per_call_median": round(statistics.median(durations) * 1000, 2),
        "ms_per_call_mean": round(statistics.fmean(durations) * 1000, 2),
        "ms_per_call_min": round(min(durations) * 1000, 2),
        "queries_per_call": len(queries),
        "response_bytes": len(first.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--destinations", type=int, default=4)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()

    setup_django(options.repo.resolve())
    from django.db import connection

    session_id, key = fill(options.images, options.destinations)
    result = {
        "benchmark": "delivery_status",
        "images": options.images,
        "destinations": options.destinations,
        "calls": options.calls,
        **measure(session_id, key, options.calls),
        "database": connection.vendor,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }
    for name, value in result.items():
        print(f"{name:20} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
