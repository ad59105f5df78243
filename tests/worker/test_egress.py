"""The egress policy inside the real HTTP clients (both onward transports, the webhook
client and the token client): a name is resolved once, every answer is checked, and the
connection goes to a checked address."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from models.net.egress import DestinationForbidden, EgressPolicy
from models.net.sync_client import make_sync_client
from worker.calls.auth import HeaderAuth
from worker.calls.onward import OnwardRequest
from worker.calls.timeouts import Timeouts
from worker.net.send import Answer, Failure, Outcome, SendPolicy, send
from worker.net.transport import TransportKind, make_async_client, make_webhook_client

KINDS: list[TransportKind] = ["aiohttp", "httpx"]


# --- inside the real clients ------------------------------------------------------------------


class Local:
    """A real HTTP server on 127.0.0.1 only, counting what reaches it."""

    def __init__(self) -> None:
        local = self
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                local.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local() -> Iterator[Local]:
    server = Local()
    yield server
    server.close()


class Lookup:
    """Stands in for DNS: answers from a script and counts the names asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[Any]:
        return self.sync(host, port)

    def sync(self, host: str, port: int) -> list[Any]:
        self.asked.append(host)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "nxdomain":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = socket.AF_INET6 if ":" in answer else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (answer, port))]


def _get(url: str) -> OnwardRequest:
    return OnwardRequest(
        method="GET",
        url=url,
        headers={},
        content=None,
        allowed_hosts=("*.test", "xn--strae-oqa.test"),
        auth=HeaderAuth("Authorization", "Bearer t"),
        timeouts=Timeouts(connect_s=5.0, read_s=5.0, total_s=10.0),
        allowed_ports=frozenset({80, 443}),
    )


def _send(kind: TransportKind, policy: EgressPolicy, lookup: Lookup, url: str) -> Outcome:
    async def go() -> Outcome:
        client = make_async_client(
            kind,
            policy=policy,
            max_connections=4,
            connect_timeout_s=5.0,
            read_timeout_s=5.0,
            lookup=lookup,
        )
        async with client:
            return await send(client, _get(url), SendPolicy({}, policy, 10_000))

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
    kind: TransportKind, local: Local
) -> None:
    # Given a public-looking name that resolves to loopback, where a server listens
    lookup = Lookup("127.0.0.1")
    # When sent with the private-network rule on
    outcome = _send(kind, EgressPolicy(), lookup, f"http://evil.test:{local.port}/x")
    # Then nothing reached the server, and the call may be failed at once (never delivered)
    assert isinstance(outcome, Failure), outcome
    assert outcome.error == "destination_forbidden"
    assert outcome.maybe_delivered is False
    assert "evil.test resolves to an address that is not public" in outcome.message
    assert "127.0.0.1" not in outcome.message  # the address is the operator's to know
    assert local.paths == []
    assert lookup.asked == ["evil.test"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_connection_goes_to_the_address_that_was_checked(
    kind: TransportKind, local: Local
) -> None:
    # Given a name whose next answers would point elsewhere (127.0.0.2, where nothing
    # listens: the server is bound to 127.0.0.1 only), and loopback allowed
    lookup = Lookup("127.0.0.1", "127.0.0.2")
    # When sent
    outcome = _send(kind, EgressPolicy(allow_private=True), lookup, f"http://a.test:{local.port}/x")
    # Then the name was resolved once, and the request went to that answer
    assert isinstance(outcome, Answer), outcome
    assert lookup.asked == ["a.test"]
    assert local.paths == ["/x"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_name_that_does_not_resolve_fails_closed(kind: TransportKind) -> None:
    outcome = _send(kind, EgressPolicy(), Lookup("nxdomain"), "http://nowhere.test/x")
    assert isinstance(outcome, Failure), outcome
    assert outcome.error == "connect_error"
    assert outcome.maybe_delivered is False


@pytest.mark.parametrize("kind", KINDS)
def test_the_checked_host_is_the_ascii_host_that_is_connected(
    kind: TransportKind, local: Local
) -> None:
    # Given an IDNA name (Python's own IDNA 2003 codec would look up "strasse.test")
    lookup = Lookup("127.0.0.1")
    # When sent
    outcome = _send(kind, EgressPolicy(), lookup, f"http://straße.test:{local.port}/x")
    # Then the resolver was asked for the punycode name the connection uses, and refused it
    assert lookup.asked == ["xn--strae-oqa.test"]
    assert isinstance(outcome, Failure)
    assert outcome.error == "destination_forbidden"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("host", ["hooks.test", "127.0.0.1", "[::1]", "localhost"])
def test_the_webhook_client_applies_its_policy(
    kind: TransportKind, host: str, local: Local
) -> None:
    # Given a receiver's name that resolves to a private address, or such an address
    # written in the URL (never resolved by aiohttp: checked as written)
    lookup = Lookup("127.0.0.1")
    policy = EgressPolicy(setting="PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS")

    async def go(policy: EgressPolicy) -> int:
        async with make_webhook_client(
            policy, max_connections=2, timeout_s=5.0, lookup=lookup, kind=kind
        ) as client:
            return (await client.get(f"http://{host}:{local.port}/in")).status_code

    with pytest.raises((DestinationForbidden, httpx.HTTPError)) as refused:
        asyncio.run(go(policy))
    assert "PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in _chain(refused.value)
    assert local.paths == []
    # And where the policy allows it, the same client connects (IPv4 only: the server's)
    if host != "[::1]":
        assert asyncio.run(go(EgressPolicy(allow_private=True))) == 200
        assert local.paths == ["/in"]


def _chain(exc: BaseException | None) -> str:
    """The messages of an exception and its causes (aiohttp wraps a resolver's refusal)."""
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(texts)


def test_the_token_client_applies_its_policy(local: Local) -> None:
    lookup = Lookup("127.0.0.1")
    client = make_sync_client(EgressPolicy(), timeout=httpx.Timeout(5.0), lookup=lookup.sync)
    with client, pytest.raises(DestinationForbidden):
        client.post(f"http://tokens.test:{local.port}/token")
    assert local.paths == []
    # And the same client connects where the policy allows
    allowed = make_sync_client(
        EgressPolicy(allow_private=True),
        timeout=httpx.Timeout(5.0),
        lookup=Lookup("127.0.0.1").sync,
    )
    with allowed:
        assert allowed.get(f"http://tokens.test:{local.port}/ok").status_code == 200
    assert local.paths == ["/ok"]


@pytest.mark.parametrize("kind", KINDS)
def test_override_targets_are_exempt_for_onward_calls(kind: TransportKind, local: Local) -> None:
    # Given the operator's override target on loopback, private networks not allowed
    policy = EgressPolicy(trusted_hosts=frozenset({"127.0.0.1"}))

    async def go() -> Outcome:
        client = make_async_client(
            kind, policy=policy, max_connections=4, connect_timeout_s=5, read_timeout_s=5
        )
        overrides = {"https://a.test": f"http://127.0.0.1:{local.port}"}
        async with client:
            return await send(client, _get("https://a.test/x"), SendPolicy(overrides, policy, 100))

    # When sent / Then it reaches the override target
    outcome = asyncio.run(go())
    assert isinstance(outcome, Answer), outcome
    assert local.paths == ["/x"]


def test_lookups_of_one_pool_never_wait_for_another_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two lookup pools (webhooks and onward calls), and a webhook receiver's name whose
    # DNS answers only after every thread of its pool is stuck on it
    from concurrent.futures import ThreadPoolExecutor

    from worker.net.egress import threaded_lookup

    stuck = threading.Event()

    def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        if host == "slow.hooks.test":
            stuck.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    hooks = threaded_lookup(ThreadPoolExecutor(2))
    onward = threaded_lookup(ThreadPoolExecutor(2))

    async def go() -> list[Any]:
        slow = [asyncio.ensure_future(hooks("slow.hooks.test", 443)) for _ in range(4)]
        await asyncio.sleep(0.05)
        # When an onward call resolves its name meanwhile
        found = await asyncio.wait_for(onward("api.example.com", 443), 5)
        stuck.set()
        await asyncio.gather(*slow)
        return found

    # Then it is answered at once, whatever the webhooks' pool is doing
    assert asyncio.run(go())[0][4][0] == "93.184.216.34"


def test_one_tenants_slow_names_never_hold_the_lookups_of_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the webhooks' pool of 4 lookup threads, at most 2 per tenant, and tenant A's
    # receivers on names whose DNS never answers (until the test lets them)
    from concurrent.futures import ThreadPoolExecutor

    from worker.net.egress import LOOKUP_OWNER, owned_lookups, threaded_lookup

    stuck = threading.Event()
    started: list[str] = []

    def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        started.append(host)
        if host.startswith("slow"):
            stuck.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    lookup = owned_lookups(threaded_lookup(ThreadPoolExecutor(4)), per_owner=2)

    async def as_tenant(tenant: str, host: str) -> list[Any]:
        LOOKUP_OWNER.set(tenant)
        return await lookup(host, 443)

    async def go() -> list[Any]:
        slow = [asyncio.ensure_future(as_tenant("A", f"slow{i}.test")) for i in range(6)]
        await asyncio.sleep(0.1)
        # When tenant B resolves its receiver's name meanwhile
        found = await asyncio.wait_for(as_tenant("B", "hooks.b.test"), 5)
        # Then it was answered while A's lookups waited, two of them on threads, four on A
        assert sorted(h for h in started if h.startswith("slow")) == ["slow0.test", "slow1.test"]
        stuck.set()
        await asyncio.gather(*slow)
        return found

    assert asyncio.run(go())[0][4][0] == "93.184.216.34"
    assert len(started) == 7  # every lookup of A ran in the end


@pytest.mark.parametrize("kind", KINDS)
def test_a_webhook_attempt_resolves_its_receiver_as_its_tenant(kind: TransportKind) -> None:
    # Given a webhook client whose lookups note whose they are
    from worker.net.egress import LOOKUP_OWNER
    from worker.net.transport import make_webhook_client
    from worker.webhooks.sender import Prepared, attempt

    owners: list[str | None] = []

    async def lookup(host: str, port: int) -> list[Any]:
        owners.append(LOOKUP_OWNER.get())
        raise OSError("no such name")

    async def go() -> None:
        client = make_webhook_client(
            EgressPolicy(), max_connections=2, timeout_s=5, lookup=lookup, kind=kind
        )
        async with client:
            prepared = Prepared("wh_1", "https://hooks.example.test/x", b"{}", {}, tenant_id="tn_a")
            # When an attempt is made
            await attempt(client, prepared, 5.0)

    asyncio.run(go())
    # Then the lookup ran as the delivery's tenant
    assert owners == ["tn_a"]
