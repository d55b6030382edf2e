"""examples/webhook_receiver.py, the README's receiver, accepts what an event webhook really sends (and refuses a
forged event), as it accepts image deliveries (.ci/embedded-smoke)."""

import json
import socket
import subprocess
import sys

import httpx

from delivery.event_webhooks import event_delivery_execute
from delivery.models import EventDelivery
from tests.conftest import REPO_ROOT, free_port
from tests.factories import wait_until
from tests.sessions_app.helpers import create_session


def test_the_example_receiver_keeps_a_signed_event_and_refuses_a_forged_one(api_client, owner, tmp_path):
    created = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/webhooks",
        {"url": "http://127.0.0.1:9/", "topics": ["project.session.created"]},
        format="json",
        **owner.auth,
    ).json()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "examples/webhook_receiver.py",
            "--port",
            str(port),
            "--secret",
            created["secret"],
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: listening(port), timeout=10, interval=0.05)
        api_client.patch(
            f"/api/v1/projects/{owner.project.pk}/webhooks/{created['id']}",
            {"url": f"http://127.0.0.1:{port}/events"},
            format="json",
            **owner.auth,
        )
        session = create_session(api_client, owner)

        event_delivery_execute(delivery_id=str(EventDelivery.objects.get().pk))

        assert EventDelivery.objects.get().status == "sent"
        kept = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        assert [(event["event"], event["data"]["session_id"]) for event in kept] == [
            ("project.session.created", session["id"])
        ]
        forged = httpx.post(
            f"http://127.0.0.1:{port}/events",
            content=b'{"event": "project.session.created"}',
            headers={"X-Apertur-Event": "x", "X-Apertur-Timestamp": "1", "X-Apertur-Signature": "sha256=00"},
        )
        assert forged.status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
