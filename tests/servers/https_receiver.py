"""A local HTTPS server whose certificate names `localhost` only (no IP address), recording what it receives.

A client that verifies the certificate against the address it dialled instead of the host name it was given
fails against it, as it would against any real HTTPS receiver or S3 endpoint.
"""

import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST_NAME = "localhost"


def write_localhost_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` and its key, as PEM files: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "localhost.pem", directory / "localhost.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_path, key_path


class HTTPSReceiver:
    """Answers every request with 200 and an empty body, keeping connections open (HTTP/1.1); records each
    request as (method, path, Host header)."""

    def __init__(self, directory: Path) -> None:
        self.certificate, key = write_localhost_certificate(directory)
        self.requests: list[tuple[str, str, str]] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.read_body()
                recorded.append((self.command, self.path, self.headers.get("Host")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST

            def read_body(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    return
                # botocore streams S3 bodies chunked, with their checksum in a trailer.
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    self.rfile.read(size + 2)
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass

            def log_message(self, *args) -> None:
                pass

        # Listen where `localhost` resolves first, since that is the address the client will dial.
        family, *_, address = socket.getaddrinfo(HOST_NAME, 0, proto=socket.IPPROTO_TCP)[0]
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        self.server = server_class(address[:2], Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{HOST_NAME}:{self.server.server_address[1]}"
        self.listening_address = address[0]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
