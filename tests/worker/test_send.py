"""Sending one onward request: answers, caps, redirects, failures, network policy."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.bombs import MIB, brotli_bomb
from worker.calls.auth import HeaderAuth
from worker.calls.onward import OnwardRequest
from worker.calls.timeouts import Timeouts
from worker.net.egress import EgressPolicy, trusted_hosts
from worker.net.send import MAX_REDIRECTS, Answer, Failure, SendPolicy, send

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
TOKEN = "Bearer secret-token-123"
HOSTS = ("api.example.com", "files.example.com")
OPEN = SendPolicy(
    overrides={}, egress=EgressPolicy(allow_private=True), max_response_bytes=1_000_000
)
STRICT = SendPolicy(overrides={}, egress=EgressPolicy(), max_response_bytes=1_000_000)


def _policy(
    overrides: dict[str, str], *, allow_private: bool = False, cap: int = 1000
) -> SendPolicy:
    """Overrides with their targets exempt, as the worker's runtime builds them."""
    egress = EgressPolicy(allow_private, trusted_hosts(list(overrides.values())))
    return SendPolicy(overrides=overrides, egress=egress, max_response_bytes=cap)


async def _answer(handler: Handler, request: httpx.Request) -> httpx.Response:
    """Call a sync or an async handler."""
    response = handler(request)
    return response if isinstance(response, httpx.Response) else await response


class Upstream:
    """A MockTransport that records every request it receives."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)  # MockTransport has read its body already
        return await _answer(self._handler, request)

    @property
    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


TIMEOUTS = Timeouts(connect_s=10.0, read_s=30.0, total_s=30.0)


def _req(
    url: str = "https://api.example.com/v1/items?limit=2",
    method: str = "GET",
    content: bytes | None = None,
    hosts: tuple[str, ...] = HOSTS,
    timeouts: Timeouts = TIMEOUTS,
) -> OnwardRequest:
    headers = {"Accept": "application/json"}
    if content is not None:
        headers["Content-Type"] = "application/json"
    return OnwardRequest(
        method=method,
        url=url,
        headers=headers,
        content=content,
        allowed_hosts=hosts,
        auth=HeaderAuth("Authorization", TOKEN),
        timeouts=timeouts,
    )


def _run(handler: Handler, req: OnwardRequest, policy: SendPolicy = OPEN) -> tuple[Any, Upstream]:
    """Send `req` through an AsyncClient on a mock upstream, in a fresh event loop."""
    upstream = Upstream(handler)

    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
            return await send(client, req, policy)

    return asyncio.run(go()), upstream


def test_a_stored_header_value_that_is_not_ascii_fails_the_call_as_its_request() -> None:
    # Given a call stored before the API refused header values that are not ASCII
    req = replace(_req(), headers={"X-Name": "caf\u00e9-secret-value"})
    # When sent / Then nothing is sent, and the failure names the request, not its URL,
    # without quoting the value
    outcome, upstream = _run(lambda _: httpx.Response(200), req)
    assert isinstance(outcome, Failure)
    assert (outcome.error, outcome.message) == ("invalid_request", "a header value is not ASCII")
    assert outcome.maybe_delivered is False
    assert upstream.requests == []


def test_answer_is_returned() -> None:
    # Given an upstream answering JSON
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"ok": True}, headers={"X-Request-Id": "r1"})

    # When sent
    outcome, upstream = _run(handler, _req())
    # Then the answer carries status, headers and body, with the credential sent
    assert isinstance(outcome, Answer)
    assert outcome.status == 201
    assert outcome.body == b'{"ok":true}'
    assert ("x-request-id", "r1") in [(k.lower(), v) for k, v in outcome.headers]
    assert outcome.truncated is False
    assert upstream.requests[0].headers["Authorization"] == TOKEN
    assert str(upstream.requests[0].url) == "https://api.example.com/v1/items?limit=2"


def test_the_clients_headers_go_under_the_calls_own_with_its_timeouts() -> None:
    # Given a client with headers of its own, and a call that sets one of them, spelled
    # in another case
    upstream = Upstream(lambda _: httpx.Response(200))
    req = replace(_req(), headers={"accept-encoding": "identity", "Accept": "text/csv"})

    async def go() -> Any:
        client_headers = {"Accept-Encoding": "gzip, br", "X-Sent-By": "passthru"}
        transport = httpx.MockTransport(upstream)
        async with httpx.AsyncClient(transport=transport, headers=client_headers) as client:
            return await send(client, req, OPEN)

    # When sent
    outcome = asyncio.run(go())
    # Then the call's value replaced the client's, each header went once, the client's
    # other headers went too, and the call's own timeouts went with the request
    assert isinstance(outcome, Answer)
    sent = upstream.requests[0]
    assert sent.headers.get_list("accept-encoding") == ["identity"]
    assert sent.headers.get_list("accept") == ["text/csv"]
    assert (b"X-Sent-By", b"passthru") in sent.headers.raw  # as the client wrote it
    assert sent.headers["authorization"] == TOKEN
    assert sent.extensions["timeout"] == {
        "connect": 10.0,
        "read": 30.0,
        "write": 30.0,
        "pool": None,
    }


def test_upstream_error_status_is_still_an_answer() -> None:
    outcome, _ = _run(lambda _: httpx.Response(404, text="nope"), _req())
    assert isinstance(outcome, Answer)
    assert outcome.status == 404
    assert outcome.body == b"nope"


def test_body_over_cap_is_cut_and_flagged() -> None:
    policy = _policy({}, allow_private=True, cap=10)
    outcome, _ = _run(lambda _: httpx.Response(200, content=b"x" * 100), _req(), policy)
    assert isinstance(outcome, Answer)
    assert outcome.body == b"x" * 10
    assert outcome.truncated is True


def test_body_at_cap_is_not_flagged() -> None:
    policy = _policy({}, allow_private=True, cap=10)
    outcome, _ = _run(lambda _: httpx.Response(200, content=b"y" * 10), _req(), policy)
    assert isinstance(outcome, Answer)
    assert outcome.body == b"y" * 10
    assert outcome.truncated is False


def test_redirect_to_allowed_host_is_followed_with_credentials() -> None:
    # Given an upstream that redirects to another of the app's hosts
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.example.com":
            return httpx.Response(302, headers={"Location": "https://files.example.com/f/1?dl=1"})
        return httpx.Response(200, content=b"file")

    # When sent
    outcome, upstream = _run(handler, _req())
    # Then the redirect is followed, and the credential goes to the allowed host
    assert isinstance(outcome, Answer)
    assert outcome.status == 200
    assert outcome.body == b"file"
    assert upstream.hosts == ["api.example.com", "files.example.com"]
    assert str(upstream.requests[1].url) == "https://files.example.com/f/1?dl=1"
    assert upstream.requests[1].headers["Authorization"] == TOKEN


def test_relative_redirect_is_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(301, headers={"Location": "/v2/items"})
        return httpx.Response(200, json=[])

    outcome, upstream = _run(handler, _req())
    assert isinstance(outcome, Answer)
    assert outcome.status == 200
    assert [r.url.path for r in upstream.requests] == ["/v1/items", "/v2/items"]


def test_redirect_to_other_host_is_not_followed() -> None:
    # Given an upstream that redirects off the app's hosts
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.example.com":
            return httpx.Response(302, headers={"Location": "https://evil.com/steal"})
        return httpx.Response(200, text="stolen")

    # When sent
    outcome, upstream = _run(handler, _req())
    # Then the 302 is the answer and nothing reached the other host
    assert isinstance(outcome, Answer)
    assert outcome.status == 302
    assert dict((k.lower(), v) for k, v in outcome.headers)["location"] == "https://evil.com/steal"
    assert upstream.hosts == ["api.example.com"]


def test_redirect_to_lookalike_host_is_not_followed() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://api.example.com.evil.com/x"})

    outcome, upstream = _run(handler, _req())
    assert isinstance(outcome, Answer)
    assert outcome.status == 307
    assert upstream.hosts == ["api.example.com"]


def test_redirect_downgrade_to_http_is_not_followed() -> None:
    # Given an https app whose upstream redirects to plain http on the same host
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": "http://api.example.com/v1/items"})
        return httpx.Response(200, text="over plain http")

    # When sent
    outcome, upstream = _run(handler, _req())
    # Then the credential is never sent in clear text: the redirect is not followed
    assert [r.url.scheme for r in upstream.requests] == ["https"]
    assert isinstance(outcome, Answer)
    assert outcome.status == 302


def test_303_turns_post_into_get_without_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(303, headers={"Location": "/v1/items/7"})
        return httpx.Response(200, json={"id": 7})

    outcome, upstream = _run(handler, _req(method="POST", content=b'{"name":"x"}'))
    assert isinstance(outcome, Answer)
    assert outcome.status == 200
    assert [r.method for r in upstream.requests] == ["POST", "GET"]
    assert upstream.requests[0].content == b'{"name":"x"}'
    assert upstream.requests[1].content == b""


def test_307_keeps_method_and_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(307, headers={"Location": "/v1/items2"})
        return httpx.Response(200)

    _, upstream = _run(handler, _req(method="POST", content=b'{"a":1}'))
    assert [r.method for r in upstream.requests] == ["POST", "POST"]
    assert upstream.requests[1].content == b'{"a":1}'


def test_too_many_redirects_is_a_failure() -> None:
    counter = iter(range(100))

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": f"/loop/{next(counter)}"})

    outcome, upstream = _run(handler, _req())
    assert isinstance(outcome, Failure)
    assert outcome.error == "too_many_redirects"
    assert len(upstream.requests) == MAX_REDIRECTS + 1


def test_connect_error_was_not_delivered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    outcome, _ = _run(handler, _req())
    assert isinstance(outcome, Failure)
    assert outcome.error == "connect_error"
    assert outcome.maybe_delivered is False


def test_connect_timeout_was_not_delivered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    outcome, _ = _run(handler, _req())
    assert isinstance(outcome, Failure)
    assert outcome.error == "connect_timeout"
    assert outcome.maybe_delivered is False


def test_read_timeout_may_have_been_delivered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    outcome, _ = _run(handler, _req(method="POST", content=b"{}"))
    assert isinstance(outcome, Failure)
    assert outcome.error == "timeout"
    assert outcome.maybe_delivered is True


class _StallingStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"partial"
        raise httpx.ReadTimeout("body stalled")


def test_timeout_while_reading_body_may_have_been_delivered() -> None:
    outcome, _ = _run(lambda _: httpx.Response(200, stream=_StallingStream()), _req())
    assert isinstance(outcome, Failure)
    assert outcome.error == "timeout"
    assert outcome.maybe_delivered is True


def test_other_transport_error_is_a_network_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)

    outcome, _ = _run(handler, _req())
    assert isinstance(outcome, Failure)
    assert outcome.error == "network_error"
    assert outcome.maybe_delivered is True


def test_private_address_is_forbidden() -> None:
    # Given a URL on loopback and private networks not allowed
    outcome, upstream = _run(
        lambda _: httpx.Response(200), _req("http://127.0.0.1:8080/x", hosts=("127.0.0.1",)), STRICT
    )
    # Then nothing is sent
    assert isinstance(outcome, Failure)
    assert outcome.error == "destination_forbidden"
    assert outcome.maybe_delivered is False
    assert upstream.requests == []


@pytest.mark.parametrize("host", ["10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]"])
def test_private_ip_literals_are_forbidden(host: str) -> None:
    outcome, upstream = _run(
        lambda _: httpx.Response(200), _req(f"http://{host}/x", hosts=(host.strip("[]"),)), STRICT
    )
    assert isinstance(outcome, Failure)
    assert outcome.error == "destination_forbidden"
    assert upstream.requests == []


def test_redirect_to_private_address_is_forbidden() -> None:
    # Given an allowed host list that (wrongly) includes a loopback address
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://127.0.0.1/admin"})

    policy = _policy({"https://api.example.com": "http://10.9.9.9:9000"})
    outcome, upstream = _run(handler, _req(hosts=("api.example.com", "127.0.0.1")), policy)
    # Then the redirect target is checked too and never contacted
    assert isinstance(outcome, Failure)
    assert outcome.error == "destination_forbidden"
    assert upstream.hosts == ["10.9.9.9"]


def test_override_target_on_loopback_is_allowed() -> None:
    # Given an operator override to a local mock, and private networks not allowed
    policy = _policy({"https://api.example.com": "http://127.0.0.1:9000"})
    # When sent
    outcome, upstream = _run(lambda _: httpx.Response(200, text="mock"), _req(), policy)
    # Then it reaches the override, with path and query kept
    assert isinstance(outcome, Answer)
    assert outcome.body == b"mock"
    assert str(upstream.requests[0].url) == "http://127.0.0.1:9000/v1/items?limit=2"
    assert upstream.requests[0].headers["Authorization"] == TOKEN


def test_override_only_applies_to_its_origin() -> None:
    policy = _policy({"https://other.example.com": "http://127.0.0.1:9000"}, allow_private=True)
    _, upstream = _run(lambda _: httpx.Response(200), _req(), policy)
    assert str(upstream.requests[0].url) == "https://api.example.com/v1/items?limit=2"


def test_redirect_on_override_target_stays_on_override() -> None:
    # Given an override, and the mock redirecting with a relative and then absolute Location
    policy = _policy({"https://api.example.com": "http://127.0.0.1:9000"})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(302, headers={"Location": "/v1/moved?p=1"})
        if request.url.path == "/v1/moved":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1:9000/v1/final"})
        return httpx.Response(200, text="final")

    outcome, upstream = _run(handler, _req(), policy)
    assert isinstance(outcome, Answer)
    assert outcome.body == b"final"
    assert [str(r.url) for r in upstream.requests] == [
        "http://127.0.0.1:9000/v1/items?limit=2",
        "http://127.0.0.1:9000/v1/moved?p=1",
        "http://127.0.0.1:9000/v1/final",
    ]


def test_url_the_client_cannot_send_is_a_failure_not_a_crash() -> None:
    # Given a stored URL httpx refuses to build (a control character in it)
    # When sent / Then send() returns a Failure, as its contract says, instead of raising
    # (an exception here leaves the call `running` until its lease expires, and a GET is
    # then retried forever)
    outcome, upstream = _run(lambda _: httpx.Response(200), _req("https://api.example.com/a\r\nb"))
    assert isinstance(outcome, Failure)
    assert outcome.maybe_delivered is False
    assert upstream.requests == []


@pytest.mark.parametrize("location", ["http://[::1", "https://api.example.com:99999/x"])
def test_malformed_redirect_location_does_not_crash(location: str) -> None:
    # Given an upstream (which passthru does not control) sending a broken Location
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": location})

    # When sent / Then send() still returns an outcome instead of raising
    outcome, upstream = _run(handler, _req())
    assert isinstance(outcome, Answer | Failure)
    assert len(upstream.requests) == 1


# --- total deadline ---------------------------------------------------------------------------

DEADLINE = Timeouts(connect_s=10.0, read_s=30.0, total_s=0.05)


def test_upstream_slower_than_the_deadline_is_a_timeout() -> None:
    # Given an upstream that takes far longer to answer than the total deadline
    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        return httpx.Response(200, text="too late")

    # When sent
    outcome, upstream = _run(slow, _req(method="POST", content=b"{}", timeouts=DEADLINE))
    # Then the attempt ends as a timeout that may have reached the upstream
    assert isinstance(outcome, Failure)
    assert outcome.error == "timeout"
    assert outcome.maybe_delivered is True
    assert "0.05" in outcome.message
    assert len(upstream.requests) == 1


class _EndlessStream(httpx.AsyncByteStream):
    """A body whose first chunk arrives and whose rest never does."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"first chunk"
        await asyncio.Event().wait()
        yield b"never"


def test_body_that_never_ends_is_cut_by_the_deadline() -> None:
    # Given an upstream that answers at once but never finishes its body
    # When sent
    outcome, _ = _run(
        lambda _: httpx.Response(200, stream=_EndlessStream()), _req(timeouts=DEADLINE)
    )
    # Then the total deadline covers reading the body too
    assert isinstance(outcome, Failure)
    assert outcome.error == "timeout"
    assert outcome.maybe_delivered is True


def test_deadline_covers_every_redirect_hop() -> None:
    # Given an upstream that redirects once and then stalls
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(302, headers={"Location": "/v1/slow"})
        await asyncio.sleep(60)
        return httpx.Response(200)

    # When sent
    outcome, upstream = _run(handler, _req(timeouts=DEADLINE))
    # Then the deadline is for the whole exchange, not per hop
    assert isinstance(outcome, Failure)
    assert outcome.error == "timeout"
    assert [r.url.path for r in upstream.requests] == ["/v1/items", "/v1/slow"]


# --- ports, bounded bodies ----------------------------------------------------------------------


def test_redirect_to_another_port_of_an_allowed_host_is_not_followed() -> None:
    # Given an upstream redirecting to its own host on a port the app does not use
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://api.example.com:8443/admin"})

    # When sent / Then the redirect is the answer; nothing went to that port
    outcome, upstream = _run(handler, _req())
    assert isinstance(outcome, Answer)
    assert outcome.status == 302
    assert upstream.hosts == ["api.example.com"]


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def test_a_compression_bomb_is_cut_at_the_cap_of_decoded_bytes() -> None:
    # Given an upstream answering a few hundred bytes of brotli that decode to 256 MiB
    bomb = brotli_bomb(256 * MIB)
    assert len(bomb) < 1000

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "br"}, stream=_Chunks(bomb))

    # When read with a 1 MB cap
    policy = _policy({}, allow_private=True, cap=1_000_000)
    outcome, _ = _run(handler, _req(), policy)
    # Then the body is the first 1 MB of the decoded stream, flagged as cut
    assert isinstance(outcome, Answer)
    assert outcome.truncated is True
    assert outcome.body == b"\0" * 1_000_000


def test_a_body_whose_encoding_breaks_is_kept_as_far_as_it_decoded() -> None:
    import gzip

    good = gzip.compress(b"hello " * 1000)

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=_Chunks(good[:200], b"garbage")
        )

    outcome, _ = _run(handler, _req())
    assert isinstance(outcome, Answer)
    assert outcome.truncated is True
    assert (b"hello " * 1000).startswith(outcome.body)


def test_the_bodies_of_one_message_share_its_memory_budget() -> None:
    # Given a budget of 150 bytes for a message and three answers of 100 bytes
    from worker.net.send import MemoryBudget

    budget = MemoryBudget(150)

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Chunks(b"x" * 100))

    async def go() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return [await send(client, _req(), OPEN, budget) for _ in range(3)]

    first, second, third = asyncio.run(go())
    # Then the first is whole, the second cut where the budget ran out, the third empty
    assert (first.body, first.truncated) == (b"x" * 100, False)
    assert (second.body, second.truncated) == (b"x" * 50, True)
    assert (third.body, third.truncated) == (b"", True)


class _Slow(httpx.AsyncByteStream):
    """A body that arrives in small pieces, letting other bodies arrive in between."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(10):
            await asyncio.sleep(0.001)
            yield b"y" * 10


def test_bodies_read_at_the_same_time_share_the_budget() -> None:
    # Given a budget of 150 bytes and three 100-byte bodies arriving at once
    from worker.net.send import MemoryBudget

    budget = MemoryBudget(150)

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Slow())

    async def go() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return list(await asyncio.gather(*(send(client, _req(), OPEN, budget) for _ in "abc")))

    outcomes = asyncio.run(go())
    # Then together they kept what the budget allows, and the ones cut say so
    assert sum(len(o.body) for o in outcomes) == 150
    assert sum(o.truncated for o in outcomes) >= 2


@pytest.mark.parametrize(
    "encoding",
    [
        ", ".join(["gzip"] * 5000),  # each layer would cost a decoder
        "gzip, gzip, gzip",  # one more than any server stacks
        "zstd",  # not offered, not undone here
        "gzip, compress",
    ],
)
def test_a_body_in_an_encoding_not_undone_is_not_kept(encoding: str) -> None:
    # Given an answer in encodings passthru does not undo, hiding the echoed credential
    # (three gzip layers, base64'd into `output`, would hand the token to the tenant)
    hidden = gzip.compress(gzip.compress(gzip.compress(b'{"echo": "Bearer secret-token"}')))

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=_Chunks(hidden))

    # When read / Then nothing of the body is kept, and the answer says it was cut
    outcome, _ = _run(handler, _req())
    assert isinstance(outcome, Answer)
    assert (outcome.status, outcome.body, outcome.truncated) == (200, b"", True)


@pytest.mark.parametrize(
    "location",
    ["https://api.example.com:443/v1/final", "https://user@api.example.com/v1/final"],
)
def test_a_redirect_never_spells_its_way_out_of_the_override(location: str) -> None:
    # Given an override target (a sandbox) that redirects to the public origin spelled with
    # an explicit default port, or with user info
    policy = _policy({"https://api.example.com": "http://127.0.0.1:9000"})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, text="final")

    # When followed / Then it stays on the override target, or is not followed at all
    outcome, upstream = _run(handler, _req(), policy)
    assert isinstance(outcome, Answer)
    assert set(upstream.hosts) == {"127.0.0.1"}
