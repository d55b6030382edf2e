"""Bodies are bounded before Django reads them (the ASGI layer), always with the JSON error envelope."""

import json
import socket
import time

import httpx

from tests.conftest import ServerProcess
from tests.factories import image_bytes, make_persona
from tests.sessions_app.test_concurrency import create_session


def raw_request(server_url: str, head: str) -> tuple[int, dict]:
    """Send only a request head (no body) and read the answer: the server must answer without the body."""
    host, port = server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_a_declared_body_over_the_hard_cap_is_refused_unread_with_413(live_server_process):
    persona = make_persona("owner")
    session_id = create_session(live_server_process.url, persona.plain_key)

    status, body = raw_request(
        live_server_process.url,
        f"POST /api/v1/upload/{session_id}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 900000000\r\n\r\n",
    )

    assert (status, body["code"], body["statusCode"]) == (413, "FILE_TOO_LARGE", 413)


def test_a_chunked_upload_is_refused_with_411_length_required(live_server_process):
    persona = make_persona("owner")
    session_id = create_session(live_server_process.url, persona.plain_key)
    data = image_bytes()

    def chunks():
        yield data[:100]
        yield data[100:]

    response = httpx.post(
        f"{live_server_process.url}/api/v1/upload/{session_id}/images",
        content=chunks(),
        headers={"Content-Type": "image/jpeg"},
        timeout=10,
    )

    assert response.status_code == 411
    assert response.json()["code"] == "LENGTH_REQUIRED"


def test_an_upload_over_its_sessions_limit_is_refused_before_its_body_is_sent(live_server_process):
    # 30 MiB declared, under the server's hard cap but over the session's 20 MiB: no byte of it is needed to answer.
    persona = make_persona("owner")
    session_id = create_session(live_server_process.url, persona.plain_key)

    status, body = raw_request(
        live_server_process.url,
        f"POST /api/v1/upload/{session_id}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {30 * 1024 * 1024}\r\n\r\n",
    )

    assert (status, body["code"], body["message"]) == (413, "FILE_TOO_LARGE", "The image is larger than 20 MB.")


def test_an_upload_to_an_unknown_session_is_refused_before_its_body_is_sent(live_server_process):
    status, body = raw_request(
        live_server_process.url,
        "POST /api/v1/upload/sess_01NOSUCHSESSION00000000000/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 5000000\r\n\r\n",
    )

    assert (status, body["code"]) == (404, "NOT_FOUND")


def test_a_body_that_stops_arriving_is_answered_408_after_the_idle_timeout(transactional_db, tmp_path):
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log", APERTUR_BODY_IDLE_TIMEOUT_SECONDS="1")
    try:
        persona = make_persona("owner")
        session_id = create_session(server.url, persona.plain_key)
        started = time.monotonic()
        # Half of a 1000-byte body, then nothing: the answer must come without the rest.
        status, body = raw_request(
            server.url,
            f"POST /api/v1/upload/{session_id}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000\r\n\r\n" + "x" * 500,
        )
        waited = time.monotonic() - started
    finally:
        server.stop()

    assert (status, body["code"]) == (408, "REQUEST_TIMEOUT")
    assert 1 <= waited < 5
