"""Reading one HTTP/1.1 request off a raw socket, for the test servers that answer (or misbehave) byte by byte
where http.server would not let them: the tar pit, the long-answer webhook server, Azurite's cutting proxy."""

import socket


def read_request(connection: socket.socket, *, answer_expect: bool = False) -> tuple[list[bytes], bytes] | None:
    """The request's head lines (request line first) and its body (Content-Length bytes); None when the client
    closes the connection before the request is whole. `answer_expect`: send `100 Continue` to a client that asks
    for it before its body (botocore does)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")), 0)
    if answer_expect and any(line.lower().startswith(b"expect:") for line in lines):
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        body += chunk
    return lines, body
