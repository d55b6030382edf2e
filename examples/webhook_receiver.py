"""A minimal webhook receiver for trying Apertur locally: verifies the signature and saves each image.

    python examples/webhook_receiver.py --port 9100 --secret my-webhook-secret --out received/

Standard library only. A real receiver should also deduplicate on X-Aptr-Delivery-Id (stable across retries).
"""

import argparse
import hashlib
import hmac
import json
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

    print(f"listening on http://127.0.0.1:{options.port}/ ; images go to {options.out}/")
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
