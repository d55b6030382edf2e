"""Steps that destination tests take through the HTTP API, as a client would, and a fixed-answer server."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import Persona


def create_destination(api_client, persona: Persona, type: str, config: dict, name: str = "destination") -> dict:
    response = api_client.post(
        f"/api/v1/projects/{persona.project.pk}/destinations",
        {"type": type, "name": name, "config": config},
        format="json",
        **persona.auth,
    )
    assert response.status_code == 201, response.content
    return response.json()


def create_session(api_client, persona: Persona, destination_ids: list[str], **body) -> dict:
    response = api_client.post(
        "/api/v1/upload-sessions", {"destination_ids": destination_ids, **body}, format="json", **persona.auth
    )
    assert response.status_code == 201, response.content
    return response.json()


def upload_image(api_client, session_id: str, data: bytes, name: str = "photo.jpg") -> dict:
    response = api_client.post(
        f"/api/v1/upload/{session_id}/images",
        {"file": SimpleUploadedFile(name, data, "image/jpeg")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()


class FixedAnswerServer:
    """A local HTTP server that answers every request, whatever its method, with one status (and headers), and
    records each one.

    For answers the webhook receiver cannot give: a redirect with a Location, an S3 endpoint's 500, a body with a
    NUL character.
    """

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.requests: list[str] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" (botocore sends it) at once

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded.append(f"{self.command} {self.path}")
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_GET = do_HEAD = do_DELETE = do_POST

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
