"""A token endpoint's whole exchange ends within TOKEN_DEADLINE_S, however slowly it sends
its status line, headers or body, over plain HTTP and over TLS (real sockets, a real
certificate): a refresh holds a worker's thread, a code exchange one of the API's."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from models.net.egress import EgressPolicy
from models.net.sync_client import make_sync_client
from models.oauth.token_exchange import RefreshUnavailable, post_form
from tests.raw_http import read_request

_ANSWER = b'{"access_token": "at-new", "token_type": "bearer"}'
# Headers sent a byte at a time, 50 ms apart: about 10 s, far past the deadline set here.
_PADDING = b"X-Pad: " + b"p" * 200 + b"\r\n"


class _Endpoint(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drip: str | None, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.drip = drip  # None (answer at once), "status" or "headers"
        self.tls = tls
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}/token"


class _Handler(socketserver.BaseRequestHandler):
    server: _Endpoint

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)  # only so that a broken test cannot hang the suite
        if self.server.tls is None:
            self._answer(sock)
            return
        with self.server.tls.wrap_socket(sock, server_side=True) as tls:
            self._answer(tls)

    def _answer(self, sock: socket.socket) -> None:
        if read_request(sock) is None:  # (read whole: see read_request)
            return
        head = b"HTTP/1.1 200 OK\r\n" + _PADDING
        tail = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(_ANSWER)
        tail += b"Connection: close\r\n\r\n"
        slow = {"status": head, "headers": head[17:]}.get(self.server.drip or "", b"")
        try:
            if self.server.drip == "headers":
                sock.sendall(head[:17])
            for byte in slow:
                if self.server.stop.wait(0.05):
                    return
                sock.sendall(bytes([byte]))
            sock.sendall((b"" if slow else head) + tail + _ANSWER)
        except OSError:
            return  # the client gave up and closed


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(cert_pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


@pytest.fixture(params=[False, True], ids=["http", "https"])
def tls(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ssl.SSLContext | None:
    """The server's TLS context (None: plain HTTP); the token client trusts its certificate."""
    if not request.param:
        return None
    server, client = _tls_contexts(tmp_path)
    monkeypatch.setattr(httpx, "create_ssl_context", lambda **_: client)
    return server


@pytest.fixture
def serve(tls: ssl.SSLContext | None) -> Iterator[Callable[[str | None], _Endpoint]]:
    started: list[_Endpoint] = []

    def start(drip: str | None) -> _Endpoint:
        server = _Endpoint(drip, tls)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop.set()
        server.shutdown()
        server.server_close()


def _client() -> httpx.Client:
    return make_sync_client(EgressPolicy(allow_private=True), timeout=httpx.Timeout(5.0))


def test_a_prompt_token_endpoint_is_read(serve: Callable[[str | None], _Endpoint]) -> None:
    endpoint = serve(None)
    with _client() as http:
        assert post_form(http, endpoint.url, {"grant_type": "refresh_token"}) == (
            200,
            {"access_token": "at-new", "token_type": "bearer"},
        )


@pytest.mark.parametrize("drip", ["status", "headers"])
def test_a_token_endpoint_dripping_its_status_line_or_headers_is_cut_at_the_deadline(
    serve: Callable[[str | None], _Endpoint], monkeypatch: pytest.MonkeyPatch, drip: str
) -> None:
    # Given a token endpoint that sends its status line or its headers a byte every 50 ms,
    # each byte well within the client's 5 s read timeout
    monkeypatch.setattr("models.oauth.token_exchange.TOKEN_DEADLINE_S", 0.5)
    endpoint = serve(drip)
    # When a refresh posts to it / Then the exchange is given up at the deadline, not read
    # to its end (about 10 s later, a valid answer)
    with _client() as http, pytest.raises(RefreshUnavailable, match=r"within 0\.5 s"):
        post_form(http, endpoint.url, {"grant_type": "refresh_token"})
