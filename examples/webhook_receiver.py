"""A minimal webhook receiver for trying Apertur locally: verifies the signature and saves each image, or each
project event.

    python examples/webhook_receiver.py --port 9100 --secret my-webhook-secret --out received/

Images (a webhook destination, docs/api.md "Webhook destination") are signed over the body; events (an event
webhook with `signatureMethod: hmac_sha256`, docs/api.md "Event webhooks") over "<X-Apertur-Timestamp>.<body>",
with the secret the create answer showed. Events are appended to <out>/events.jsonl. Standard library only. A real
receiver should also deduplicate on X-Aptr-Delivery-Id / X-Apertur-Delivery-Id (stable across retries).
"""

import argparse
import hashlib
import hmac
import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", type=Path, default=Path("received"))
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("X-Apertur-Event"):
                return self.event(body)
            expected = "sha256=" + hmac.new(options.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Apertur-Signature", "")):
                print("refused: bad signature")
                self.send_response(401)
                self.end_headers()
                return
            name, data = _image_from(self.headers, body)
            target = options.out / f"{self.headers['X-Aptr-Image-Id']}_{Path(name).name}"
            target.write_bytes(data)
            print(f"delivery {self.headers['X-Aptr-Delivery-Id']}: saved {target} ({len(data)} bytes)")
            self.send_response(200)
            self.end_headers()

        def event(self, body: bytes) -> None:
            timestamp = self.headers.get("X-Apertur-Timestamp", "")
            signed = f"{timestamp}.".encode() + body
            expected = "sha256=" + hmac.new(options.secret.encode(), signed, hashlib.sha256).hexdigest()
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300  # refuse replays of old ones
            if not fresh or not hmac.compare_digest(expected, self.headers.get("X-Apertur-Signature", "")):
                print("refused event: bad or stale signature")
                self.send_response(401)
                self.end_headers()
                return
            document = json.loads(body)
            with (options.out / "events.jsonl").open("a") as events:
                events.write(json.dumps(document) + "\n")
            print(f"event {document['event']}: {json.dumps(document['data'])}")
            self.send_response(200)
            self.end_headers()

    print(f"listening on http://127.0.0.1:{options.port}/ ; images and events go to {options.out}/")
    ThreadingHTTPServer(("127.0.0.1", options.port), Handler).serve_forever()


def _image_from(headers, body: bytes) -> tuple[str, bytes]:
    content_type = headers.get("Content-Type", "")
    if content_type.startswith("application/json"):
        import base64

        document = json.loads(body)
        return document["filename"], base64.b64decode(document["data"])
    if content_type.startswith("multipart/"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "image":
                return part.get_filename() or "image", part.get_payload(decode=True)
    return headers.get("X-Aptr-Filename", "image"), body


if __name__ == "__main__":
    main()
