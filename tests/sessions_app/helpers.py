"""Helpers for tests that create sessions and upload into them through the API, as clients do."""

import zlib
from struct import pack

from django.core.files.uploadedfile import SimpleUploadedFile

from destinations.models import Destination
from destinations.services import destination_create
from tests.factories import Persona

BOUNDARY = "----apertur-test-boundary"


def webhook_destination(persona: Persona, name: str = "receiver") -> Destination:
    """A webhook destination; nothing is delivered in tests that do not run a worker."""
    return destination_create(
        project=persona.project,
        type="webhook",
        name=name,
        config={"url": "http://127.0.0.1:9/hook", "secret": "s3cret-value"},
    )


def create_session(api_client, persona: Persona, **body) -> dict:
    """POST /api/v1/upload-sessions; long polling unless the body says otherwise, so no destination is needed."""
    body.setdefault("long_polling", True)
    response = api_client.post("/api/v1/upload-sessions", body, format="json", **persona.auth)
    assert response.status_code == 201, response.content
    return response.json()


def assert_validation_error(response, field: str) -> dict:
    """A 400 VALIDATION_ERROR envelope whose `fields` names `field` (or one of its items, `field.0`)."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert any(name == field or name.startswith(f"{field}.") for name in body["fields"]), body
    return body


def upload(api_client, session_id: str, data: bytes, name: str = "photo.jpg", content_type="image/jpeg", **extra):
    """POST one image the way the SDK does (multipart part `file`); `extra` holds headers and a `source`."""
    fields = {"file": SimpleUploadedFile(name, data, content_type)}
    if "source" in extra:
        fields["source"] = extra.pop("source")
    return api_client.post(f"/api/v1/upload/{session_id}/images", fields, format="multipart", **extra)


def multipart_part(disposition: str, data: bytes, content_type: str = "image/jpeg") -> bytes:
    headers = f"Content-Disposition: form-data; {disposition}\r\nContent-Type: {content_type}"
    return f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"


def upload_parts(api_client, session_id: str, *parts: bytes, **extra):
    """Upload a hand-written multipart body, for part headers the test client would rewrite."""
    return api_client.post(
        f"/api/v1/upload/{session_id}/images",
        data=b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        **extra,
    )


def upload_raw_part(api_client, session_id: str, data: bytes, disposition: str, **extra):
    """Upload one image part with a hand-written Content-Disposition."""
    return upload_parts(api_client, session_id, multipart_part(disposition, data), **extra)


def png_decompression_bomb(side: int) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels: all zeros, so it compresses to almost nothing.

    Decoded, Pillow would need `side`² bytes (one per pixel), far more than the compressed size.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return pack(">I", len(payload)) + kind + payload + pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + bytes((side + 7) // 8)  # filter type 0, then the packed pixels
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    data = b"".join(compressor.compress(row * rows_per_block) for _ in range(side // rows_per_block))
    data += compressor.compress(row * (side % rows_per_block)) + compressor.flush()
    header = pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
