"""Serving (docs/deployment.md): `apertur_web --workers N` starts, and its processes stop at once when told to,
answering their waiters first instead of holding the shutdown for minutes."""

import signal
import threading
import time

from apertur_sdk import Apertur

from tests.conftest import ServerProcess
from tests.factories import make_persona


def test_apertur_web_with_two_processes_serves_and_answers_a_waiting_poll_when_stopped(transactional_db, tmp_path):
    server = ServerProcess(with_worker=False, web_workers=2, log_path=tmp_path / "web.log")
    answers: list[tuple[float, dict]] = []
    try:
        persona = make_persona("web-workers")
        with Apertur(api_key=persona.plain_key, base_url=server.url) as sdk:
            session = sdk.sessions.create(long_polling=True)
            baseline = sdk.sessions.delivery_status(session["id"])

            def wait_for_change() -> None:
                status = sdk.sessions.delivery_status(session["id"], poll_from=baseline["lastChanged"])
                answers.append((time.monotonic(), status))

            waiter = threading.Thread(target=wait_for_change)
            waiter.start()
            time.sleep(0.5)  # the waiter is parked (nothing to await from outside the server)
            assert answers == []
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            waiter.join(timeout=20)
            server.process.wait(timeout=20)
            stopped_in = time.monotonic() - stopping
    finally:
        server.stop()

    [(answered_at, status)] = answers
    assert answered_at - stopping < 3
    assert status["lastChanged"] == baseline["lastChanged"]  # the unchanged snapshot
    assert stopped_in < 10
