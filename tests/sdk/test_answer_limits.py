"""What the SDK reads of an answer it cannot trust (a base_url that is not passthru, a proxy
gone wrong): at most `max_response_bytes` of a body, decoded, from a real socket; and a
2xx answer that is not the API's shape is an `invalid_response` error, never a KeyError."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from passthru_client import AsyncPassthru, Passthru, PassthruError

from tests.raw_http import read_request
from tests.sdk.conftest import FakeApi, reply

CAP = 256 * 1024
CALL = b'{"id": "fc_1", "status": "completed", "network_code": "200", "output": {"ok": true}}'


def serve_once(head: bytes, chunks: Iterator[bytes], heads: list[bytes] | None = None) -> int:
    """A socket server on a free port answering one request with `head`, then `chunks`
    until they end or the client hangs up; its port. The request's head goes in `heads`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):  # the client hung up
                request = read_request(conn)
                if heads is not None and request:
                    heads.append(request[0])
                conn.sendall(head)
                for chunk in chunks:
                    conn.sendall(chunk)

    threading.Thread(target=run, daemon=True).start()
    port: int = listener.getsockname()[1]
    return port


def later(seconds: float, chunk: bytes) -> Iterator[bytes]:
    time.sleep(seconds)
    yield chunk


def endless_chunked() -> Iterator[bytes]:
    piece = b"x" * 65536
    while True:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _get_call(kind: str, port: int, **kwargs: Any) -> Any:
    base = f"http://127.0.0.1:{port}"
    if kind == "sync":
        with Passthru("pt_key", base, max_retries=0, **kwargs) as client:
            return client.get_call("fc_1")

    async def run() -> Any:
        async with AsyncPassthru("pt_key", base, max_retries=0, **kwargs) as client:
            return await client.get_call("fc_1")

    return asyncio.run(run())


def _refusal(kind: str, port: int, error: str, **kwargs: Any) -> PassthruError:
    """The PassthruError `_get_call` raises, once its code is checked to be `error`."""
    with pytest.raises(PassthruError) as caught:
        _get_call(kind, port, max_response_bytes=CAP, **kwargs)
    assert caught.value.error == error
    return caught.value


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_an_endless_answer_is_cut_at_the_cap_and_refused(kind: str) -> None:
    port = serve_once(CHUNKED_HEAD, endless_chunked())
    refused = _refusal(kind, port, "response_too_large")
    assert refused.status_code == 200
    assert f"{CAP:,} bytes" in str(refused)


@KINDS
def test_an_answer_announced_over_the_cap_is_refused_unread(kind: str) -> None:
    """The body comes 5 s after the head, past the client's 2 s timeout: only a refusal
    made from the head alone is `response_too_large`."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    port = serve_once(head % (CAP + 1), later(5, b"{" * (CAP + 1)))
    _refusal(kind, port, "response_too_large", timeout=2)


@KINDS
def test_a_compressed_bomb_is_cut_once_decoded_holding_no_more_than_the_cap(kind: str) -> None:
    """64 MiB of zeros that travel as 64 KiB: decoded a bounded step at a time, so the
    client never holds much more than the cap (one network read of it would be 64 MiB)."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    bomb = squeeze.compress(b"\0" * (64 * 1024 * 1024)) + squeeze.flush()
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    port = serve_once(head % len(bomb), iter([bomb]))
    tracemalloc.start()
    try:
        _refusal(kind, port, "response_too_large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak


@KINDS
@pytest.mark.parametrize("encoding", [b"br", b"zstd", b"gzip, gzip", b"compress"])
def test_an_encoding_the_sdk_did_not_ask_for_is_refused_undecoded(
    kind: str, encoding: bytes
) -> None:
    """A brotli bomb of 512 MiB travels in under a kilobyte: such an answer is not decoded."""
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: 4\r\n\r\n" % encoding
    port = serve_once(head, iter([b"\x1b\xff\xff\x7f"]))
    refused = _refusal(kind, port, "invalid_response")
    assert "not asked for" in str(refused)


@KINDS
def test_a_body_that_is_not_the_gzip_it_says_is_an_invalid_response(kind: str) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
    port = serve_once(head, iter([b"not gzip!"]))
    refused = _refusal(kind, port, "invalid_response")
    assert "not the gzip it says it is" in str(refused)


@KINDS
def test_an_answer_within_the_cap_is_read_and_decoded(kind: str) -> None:
    body = gzip.compress(CALL)
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    heads: list[bytes] = []
    port = serve_once(head, iter([body]), heads)
    call = _get_call(kind, port, max_response_bytes=len(CALL))
    assert (call.id, call.network_code, call.output) == ("fc_1", "200", {"ok": True})
    assert b"\r\naccept-encoding: gzip, deflate\r\n" in heads[0].lower()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1000"])
def test_the_cap_must_be_a_whole_number_above_zero(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_response_bytes"):
        Passthru("pt_key", max_response_bytes=bad)
    with pytest.raises(ValueError, match="max_response_bytes"):
        AsyncPassthru("pt_key", max_response_bytes=bad)


# Answers of another shape


@pytest.mark.parametrize(
    ("method", "args", "body"),
    [
        ("get_call", ("fc_1",), []),
        ("get_call", ("fc_1",), {"status": "completed"}),  # no id
        ("get_call", ("fc_1",), "a string"),
        ("invoke_function", ("slack-passthrough-request", {"method": "GET", "url": "x"}), 5),
        ("list_calls", (), {"items": 5}),
        ("list_functions", (), {"functions": [1, 2]}),
        ("list_functions", (), []),
        ("rate_limits", (), {"items": {"a": 1}}),
        ("list_deliveries", ("fc_1",), {"items": "none"}),
        ("get_batch", ("bt_1",), None),
    ],
)
def test_a_success_of_another_shape_is_an_invalid_response(
    client: Any, api: FakeApi, method: str, args: tuple[Any, ...], body: Any
) -> None:
    api.script(reply(200, body) if body is not None else httpx.Response(200, json=None))
    with pytest.raises(PassthruError) as caught:
        getattr(client, method)(*args)
    assert type(caught.value) is PassthruError
    assert caught.value.error == "invalid_response"
    assert "base_url" in str(caught.value)
