"""The egress policy: which addresses are refused, and the resolvers that apply it inside the
real HTTP clients (both onward transports, the webhook client and the token client): a name
is resolved once, every answer is checked, and the connection goes to a checked address."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from worker.auth import HeaderAuth
from worker.egress import DestinationForbidden, EgressPolicy, address_allowed
from worker.onward import OnwardRequest
from worker.send import Answer, Failure, Outcome, SendPolicy, send
from worker.timeouts import Timeouts
from worker.transport import (
    TransportKind,
    make_async_client,
    make_sync_client,
    make_webhook_client,
)

KINDS: list[TransportKind] = ["aiohttp", "httpx"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # link-local: AWS, GCP and Azure metadata
        "100.64.0.1",  # CGNAT
        "100.100.100.200",  # Alibaba Cloud metadata, inside CGNAT
        "0.0.0.0",
        "198.18.0.1",
        "192.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:a00:1::1",  # Teredo
        "ff02::1",
        "not-an-address",
    ],
)
def test_addresses_that_are_not_global_are_refused(address: str) -> None:
    assert address_allowed(address) is False


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address) is True


@pytest.mark.parametrize("host", ["127.1", "2130706433", "10.0.0.1", "[::1]", "::ffff:7f00:1"])
def test_hosts_that_look_like_addresses_are_checked_before_any_lookup(host: str) -> None:
    # aiohttp connects to anything made of digits and dots without asking a resolver
    with pytest.raises(DestinationForbidden):
        EgressPolicy().check_host(host)


def test_names_and_public_literals_pass_the_host_check() -> None:
    EgressPolicy().check_host("api.example.com")
    EgressPolicy().check_host("93.184.216.34")
    EgressPolicy(allow_private=True).check_host("127.0.0.1")
    EgressPolicy(trusted_hosts=frozenset({"127.0.0.1"})).check_host("127.0.0.1")


def _info(address: str) -> Any:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockaddr = (address, 443, 0, 0) if family == socket.AF_INET6 else (address, 443)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    # A rebinding name answers a public and a private address: the client might pick either
    with pytest.raises(DestinationForbidden, match=r"10\.0\.0\.7"):
        EgressPolicy().checked("rebind.example", [_info("93.184.216.34"), _info("10.0.0.7")])
    with pytest.raises(DestinationForbidden):
        EgressPolicy().checked("empty.example", [])
    assert EgressPolicy().checked("ok.example", [_info("93.184.216.34")]) == [
        (socket.AF_INET, "93.184.216.34", 0)
    ]


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
    assert "evil.test resolves to 127.0.0.1" in outcome.message
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


def test_the_webhook_client_applies_its_policy(local: Local) -> None:
    lookup = Lookup("127.0.0.1")
    policy = EgressPolicy(setting="PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS")

    async def go() -> None:
        async with make_webhook_client(
            policy, max_connections=2, timeout_s=5.0, lookup=lookup
        ) as client:
            await client.get(f"http://hooks.test:{local.port}/in")

    with pytest.raises(DestinationForbidden, match="PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS"):
        asyncio.run(go())
    assert local.paths == []


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
