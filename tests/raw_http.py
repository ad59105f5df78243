"""Reading an HTTP/1.1 request off a raw socket, for test servers that must answer byte by
byte as no framework would (dripped, broken, split where a parser chokes)."""

from __future__ import annotations

import socket


def read_request(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The request's head and its whole body (by Content-Length); None if the client left
    first. A server that answers before the body is read, then closes, resets the
    connection, and the client may lose the answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head, body
