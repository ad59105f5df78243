"""The worker's HTTP clients and what their errors mean: was the request maybe delivered?

A POST that may have reached the upstream must never be sent again, so the one thing that
matters here is that only a failure to connect counts as "not delivered".
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import brotli
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey
from httpx_aiohttp.transport import map_aiohttp_exceptions

from tests.raw_http import read_request
from worker.calls.auth import HeaderAuth
from worker.calls.onward import OnwardRequest
from worker.calls.timeouts import Timeouts
from worker.net.egress import EgressPolicy
from worker.net.send import Answer, Failure, Outcome, SendPolicy, send
from worker.net.transport import TransportKind, failure_kind, make_async_client

KINDS: list[TransportKind] = ["aiohttp", "httpx"]
POLICY = SendPolicy(
    overrides={}, egress=EgressPolicy(allow_private=True), max_response_bytes=1_000_000
)


def _key() -> ConnectionKey:
    return ConnectionKey("api.example.com", 443, True, True, None, None, None, None)


def _connector_error() -> aiohttp.ClientConnectorError:
    return aiohttp.ClientConnectorError(_key(), ConnectionRefusedError(111, "refused"))


# --- httpx's own exceptions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), ("connect_error", False)),
        (httpx.ConnectTimeout("connect timed out"), ("connect_timeout", False)),
        (httpx.ReadTimeout("read timed out"), ("timeout", True)),
        (httpx.WriteTimeout("write timed out"), ("timeout", True)),
        (httpx.RemoteProtocolError("peer closed"), ("network_error", True)),
        (httpx.ReadError("reset"), ("network_error", True)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_httpx_exceptions(exc: httpx.HTTPError, expected: tuple[str, bool]) -> None:
    # Given an exception raised by httpx's own transport / When classified
    # Then only a failure to connect says the request never left
    assert failure_kind(exc, sent=False) == expected


# --- exceptions from the httpx-aiohttp transport ----------------------------------------------


@pytest.mark.parametrize(
    ("wrapper", "cause", "expected"),
    [
        (httpx.ConnectError, _connector_error(), ("connect_error", False)),
        (httpx.ConnectTimeout, aiohttp.ServerDisconnectedError(), ("network_error", True)),
        (httpx.ConnectTimeout, aiohttp.ConnectionTimeoutError(), ("connect_timeout", False)),
        (httpx.ReadTimeout, aiohttp.SocketTimeoutError(), ("timeout", True)),
        (httpx.TimeoutException, aiohttp.ServerTimeoutError(), ("timeout", True)),
        (httpx.ConnectTimeout, aiohttp.ClientConnectionResetError(), ("network_error", True)),
        (httpx.ConnectTimeout, aiohttp.ClientOSError(104, "reset"), ("network_error", True)),
        (httpx.ReadError, aiohttp.ClientPayloadError("cut"), ("network_error", True)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_aiohttp_causes(
    wrapper: type[httpx.HTTPError], cause: Exception, expected: tuple[str, bool]
) -> None:
    # Given an httpx exception raised from an aiohttp one, as the httpx-aiohttp transport does
    exc = wrapper("x")
    exc.__cause__ = cause
    # When classified / Then the aiohttp cause decides, not the httpx class it was mapped to
    assert failure_kind(exc, sent=False) == expected
    assert failure_kind(exc, sent=True) == expected


def test_server_disconnect_is_not_a_connect_timeout() -> None:
    # Given the upstream dropped the connection after getting the request: httpx-aiohttp
    # maps aiohttp's ServerDisconnectedError to httpx.ConnectTimeout
    exc = httpx.ConnectTimeout("Server disconnected")
    exc.__cause__ = aiohttp.ServerDisconnectedError()
    # When classified
    kind, maybe_delivered = failure_kind(exc, sent=False)
    # Then it is not taken for a connect timeout: the POST may have been acted on
    assert kind != "connect_timeout"
    assert maybe_delivered is True


def _mapped(cause: Exception) -> httpx.HTTPError:
    """What the installed httpx-aiohttp transport raises for `cause`."""
    try:
        with map_aiohttp_exceptions():
            raise cause
    except httpx.HTTPError as exc:
        return exc
    raise AssertionError("not mapped")


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), ("network_error", True)),
        (_connector_error(), ("connect_error", False)),
        (aiohttp.ConnectionTimeoutError(), ("connect_timeout", False)),
        (aiohttp.SocketTimeoutError(), ("timeout", True)),
        (aiohttp.ClientPayloadError("cut"), ("network_error", True)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_the_installed_transport_mapping(cause: Exception, expected: tuple[str, bool]) -> None:
    # Given an aiohttp error mapped by the httpx-aiohttp version installed here
    exc = _mapped(cause)
    # Then the cause is kept, and the classification follows it
    assert exc.__cause__ is cause
    assert failure_kind(exc, sent=False) == expected


# --- end to end against a real socket --------------------------------------------------------


# A body that compresses well, as upstream JSON does.
_DOCUMENT = (
    b'{"items": [' + b",".join(b'{"id": %d, "name": "item"}' % i for i in range(500)) + b"]}"
)
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # HTTP's "deflate" is the zlib format
    "br": brotli.compress,
}


_ECHOED = b"xoxp-1234567890-ABCDEFGHIJKLMNOP"


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.received: list[bytes] = []
        self.got_request = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1/items"


class _Handler(socketserver.BaseRequestHandler):
    server: _Upstream

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)  # only so that a broken test cannot hang the suite
        if (request := read_request(sock)) is None:
            return
        head, body = request
        self.server.received.append(head + b"\r\n\r\n" + body)
        self.server.got_request.set()
        if self.server.mode == "answer":
            sock.sendall(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b'Content-Length: 11\r\nConnection: close\r\n\r\n{"ok":true}'
            )
        elif self.server.mode in _ENCODERS:
            body = _ENCODERS[self.server.mode](_DOCUMENT)
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Encoding: {self.server.mode}\r\n".encode()
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
        elif self.server.mode == "split_echo":
            # An echoed token broken by a bare CR, sent in two pieces: a parser that quotes
            # its buffer from where the second read began quotes the token's tail alone
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Echo: Bearer " + _ECHOED[:12])
            time.sleep(0.2)
            sock.sendall(_ECHOED[12:] + b"\rXbad\r\nContent-Length: 0\r\n\r\n")
        elif self.server.mode == "hold":
            # Never answer; wait until the client gives up and closes.
            while sock.recv(65536):
                pass
        # "drop": return, closing the connection without a word


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[_Upstream]:
    server = _Upstream(request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a loopback port where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/items"


def _post(url: str, read_s: float = 30.0) -> OnwardRequest:
    return OnwardRequest(
        method="POST",
        url=url,
        headers={"Content-Type": "application/json"},
        content=b'{"name":"x"}',
        allowed_hosts=("127.0.0.1",),
        auth=HeaderAuth("Authorization", "Bearer t"),
        timeouts=Timeouts(connect_s=10.0, read_s=read_s, total_s=30.0),
    )


def _send_real(kind: TransportKind, req: OnwardRequest) -> Outcome:
    async def go() -> Outcome:
        # Built inside the running loop, as the Sender does.
        client = make_async_client(
            kind,
            policy=POLICY.egress,
            max_connections=10,
            connect_timeout_s=10.0,
            read_timeout_s=30.0,
        )
        async with client:
            return await send(client, req, POLICY)

    return asyncio.run(go())


@pytest.mark.parametrize("upstream", ["answer"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_real_answer(kind: TransportKind, upstream: _Upstream) -> None:
    # Given a real local upstream that answers / When a POST is sent with this transport
    outcome = _send_real(kind, _post(upstream.url))
    # Then the answer comes back and the upstream got the body and the credential
    assert isinstance(outcome, Answer), outcome
    assert outcome.status == 201
    assert outcome.body == b'{"ok":true}'
    assert len(upstream.received) == 1
    assert upstream.received[0].startswith(b"POST /v1/items ")
    assert b"authorization: bearer t" in upstream.received[0].lower()
    assert upstream.received[0].endswith(b'{"name":"x"}')


@pytest.mark.parametrize("upstream", ["drop"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_dropped_after_request_may_have_been_delivered(
    kind: TransportKind, upstream: _Upstream
) -> None:
    # Given an upstream that reads the whole POST, then closes without answering
    # When sent with this transport
    outcome = _send_real(kind, _post(upstream.url))
    # Then the failure says the request may have been delivered (it was): never re-send
    assert upstream.received, "the upstream should have read the request"
    assert isinstance(outcome, Failure), outcome
    assert outcome.maybe_delivered is True
    assert outcome.error not in ("connect_error", "connect_timeout")


@pytest.mark.parametrize("upstream", ["split_echo"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_that_cannot_be_parsed_is_stored_without_what_the_parser_quotes(
    kind: TransportKind, upstream: _Upstream
) -> None:
    # Given an upstream whose answer breaks inside an echoed token, sent in two pieces
    # When sent with this transport
    outcome = _send_real(kind, _post(upstream.url))
    # Then the failure keeps the parser's reason, and no piece of the token
    assert isinstance(outcome, Failure), outcome
    assert outcome.maybe_delivered is True
    assert outcome.message.split(": ", 1)[1]  # a reason, not only the class
    for piece in (_ECHOED[:12], _ECHOED[12:], b"ABCDEFGHIJKLMNOP"):
        assert piece.decode() not in outcome.message, outcome.message


@pytest.mark.parametrize("upstream", ["hold"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_no_answer_before_read_timeout_may_have_been_delivered(
    kind: TransportKind, upstream: _Upstream
) -> None:
    # Given an upstream that reads the POST and never answers, and a call whose own read
    # timeout is far shorter than the client's default
    # When sent with this transport
    outcome = _send_real(kind, _post(upstream.url, read_s=0.2))
    # Then it is a timeout that may have been delivered
    assert upstream.got_request.is_set()
    assert isinstance(outcome, Failure), outcome
    assert outcome.error == "timeout"
    assert outcome.maybe_delivered is True


@pytest.mark.parametrize("upstream", sorted(_ENCODERS), indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_compressed_answers_are_decoded(kind: TransportKind, upstream: _Upstream) -> None:
    # Given an upstream that compresses its answer with gzip, deflate or br
    # When a request is sent with this transport
    outcome = _send_real(kind, _post(upstream.url))
    # Then the client offered that encoding, and the body comes back decoded
    assert isinstance(outcome, Answer), outcome
    offered = next(
        line.split(b":", 1)[1].decode()
        for line in upstream.received[0].split(b"\r\n")
        if line.lower().startswith(b"accept-encoding:")
    )
    assert upstream.mode in [e.strip() for e in offered.split(",")]
    assert len(_ENCODERS[upstream.mode](_DOCUMENT)) < len(_DOCUMENT) // 5
    assert outcome.body == _DOCUMENT


@pytest.mark.parametrize("kind", KINDS)
def test_closed_port_was_not_delivered(kind: TransportKind, closed_port_url: str) -> None:
    # Given nothing listening on the port / When sent with this transport
    outcome = _send_real(kind, _post(closed_port_url))
    # Then it is a connect error: the request never left, a retry is safe
    assert isinstance(outcome, Failure), outcome
    assert outcome.error == "connect_error"
    assert outcome.maybe_delivered is False


@pytest.mark.parametrize("kind", KINDS)
def test_client_is_built_with_the_settings(kind: TransportKind) -> None:
    # Given a client made for the worker
    async def go() -> dict[str, Any]:
        async with make_async_client(
            kind,
            policy=POLICY.egress,
            max_connections=7,
            connect_timeout_s=1.5,
            read_timeout_s=9.0,
        ) as client:
            return {
                "connect": client.timeout.connect,
                "read": client.timeout.read,
                "pool": client.timeout.pool,
                "follow_redirects": client.follow_redirects,
                "trust_env": client.trust_env,
            }

    # Then it never follows redirects itself (send() checks each hop) nor reads proxy env
    assert asyncio.run(go()) == {
        "connect": 1.5,
        "read": 9.0,
        "pool": None,
        "follow_redirects": False,
        "trust_env": False,
    }


@pytest.mark.parametrize("upstream", ["answer"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_a_header_the_protocol_refuses_is_never_sent_nor_quoted(
    kind: TransportKind, upstream: _Upstream
) -> None:
    # Given a credential holding a line break (a pasted key with its newline)
    req = replace(
        _post(upstream.url), auth=HeaderAuth("Authorization", "Bearer tok-PART1\r\nX-In: PART2")
    )
    # When sent with this transport
    outcome = _send_real(kind, req)
    # Then it fails as a request that never left, and its message quotes no header
    assert isinstance(outcome, Failure), outcome
    assert (outcome.error, outcome.maybe_delivered) == ("invalid_request", False)
    assert "PART1" not in outcome.message
    assert "PART2" not in outcome.message
    assert upstream.received == []
