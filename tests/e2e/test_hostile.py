"""Hostile upstreams and receivers, end to end, on both onward transports: what an upstream
sets or answers never leaks a credential or a cookie, never blows up a worker's memory, and
never leaves a call unfinished; a slow receiver never holds the threads calls need; egress
refuses addresses that are not public, for onward calls and webhooks alike."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.bombs import MIB, brotli_bomb
from tests.e2e.conftest import (
    WAIT_S,
    Caller,
    OwnStack,
    Stack,
    new_caller,
    wait_until,
)
from tests.e2e.upstream import Reply, Upstream

# `once` (SQLite pass only): its subject is what upstreams and receivers send (secrets echoed,
# cookies, bombs, drips) and egress; what is stored is scrubbed before any statement runs, and the
# statements are those test_batch and test_webhooks run on Postgres.
pytestmark = pytest.mark.once

ONE_ATTEMPT = {"max_attempts": 1}


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def worker_pid(stack: Stack) -> int:
    return stack.procs["worker"].pid


@pytest.fixture(scope="module")
def httpx_stack(own_stack: OwnStack) -> Iterator[Stack]:
    """A stack whose worker sends with httpx's own pool, and gives receivers 12 s."""
    env = {"PASSTHRU_HTTP_TRANSPORT": "httpx", "PASSTHRU_WEBHOOK_TIMEOUT_S": "12"}
    with own_stack("httpx-logs", env) as s:
        yield s


@pytest.fixture(params=["aiohttp", "httpx"])
def any_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    """The shared stack (aiohttp transport) or this module's (httpx transport)."""
    if request.param == "aiohttp":
        return stack
    found: Stack = request.getfixturevalue("httpx_stack")
    return found


@pytest.fixture
def tenant_of(any_stack: Stack) -> Iterator[Caller]:
    with new_caller(any_stack, "hostile") as c:
        yield c


def _submit(caller: Caller, app: str, user: str, url: str, **extra: Any) -> str:
    r = caller.http.post(
        f"/{app}-passthrough-request",
        json={"method": "GET", "url": url, "retry": ONE_ATTEMPT, **extra},
        headers={"X-User-ID": user},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


# --- credentials never in stored text, whatever the upstream answers ---------------------------

SECRET = "SeCrEt-" + secrets.token_hex(8)
# app, credentials carrying SECRET, connection_config, the path the stand-in sees
STYLES = {
    "bearer": ("slack", {"access_token": SECRET}, None, "/api/hostile.headers"),
    "header": ("postmark", {"api_key": SECRET}, None, "/hostile.headers"),
    "query": ("hunter", {"api_key": SECRET}, None, "/v2/hostile.headers"),
    "basic": ("freshdesk", {"api_key": SECRET}, {"domain": "acme"}, "/api/v2/hostile.headers"),
}


def _texts(stack: Stack, caller: Caller, call_id: str) -> dict[str, str]:
    """Everything passthru shows or keeps about a call, as text."""
    shown = caller.http.get(f"/function-calls/{call_id}").text
    export = caller.http.get("/function-calls/export").text
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.error_message, c.output, c.response_headers, a.error_message "
                "FROM function_call c JOIN call_attempt a ON a.call_id = c.id WHERE c.id = :id"
            ),
            {"id": call_id},
        ).all()
    return {
        "GET /function-calls/{id}": shown,
        "export": export,
        "database": json.dumps([list(map(str, row)) for row in rows]),
        "logs": stack.all_logs(),
    }


@pytest.mark.parametrize("style", sorted(STYLES))
def test_an_unparseable_answer_never_stores_the_credential(
    any_stack: Stack, tenant_of: Caller, style: str
) -> None:
    # Given an account whose secret is SECRET, and an upstream whose answer has a 300 KB
    # header, which neither HTTP client can parse
    app, credentials, config, path = STYLES[style]
    user = f"u-{style}-{secrets.token_hex(3)}"
    tenant_of.connect(app, user, credentials, config)
    any_stack.upstream.script("GET", path, Reply(200, {"ok": 1}, {"X-Huge": "h" * 300_000}))
    hook = f"/hook-{secrets.token_hex(4)}"
    any_stack.upstream.script("POST", hook, Reply(204))
    # When a call is made, with its result sent to a callback too
    call_id = _submit(
        tenant_of, app, user, path.rsplit("/", 1)[1], callback_url=any_stack.upstream.origin + hook
    )
    call = tenant_of.wait(call_id)
    # Then the call failed saying why, the secret reached the upstream (so this test means
    # something), and no text passthru shows or keeps about it holds the secret
    assert call["status"] == "failed", call
    assert call["error"] in ("invalid_response", "network_error"), call
    seen = any_stack.upstream.requests_to(path)[-1]
    assert SECRET in json.dumps([seen.headers, seen.query]) or style == "basic"
    wait_until(lambda: bool(any_stack.upstream.requests_to(hook)), WAIT_S, "the webhook")
    texts = _texts(any_stack, tenant_of, call_id)
    texts["webhook"] = any_stack.upstream.requests_to(hook)[0].body.decode()
    for where, body in texts.items():
        assert SECRET not in body, f"the secret is in {where}"


@pytest.mark.parametrize("token", [SECRET, f'{SECRET}-"quoted"-\\-/'], ids=["plain", "quoted"])
def test_an_upstream_echoing_the_token_gets_it_redacted(
    any_stack: Stack, tenant_of: Caller, token: str
) -> None:
    # Given an upstream that echoes the request's Authorization in its body (JSON, which
    # escapes a `"` or `\` of the token) and a header
    user = f"u-echo-{secrets.token_hex(3)}"
    tenant_of.connect("slack", user, {"access_token": token})

    def echo(seen: Any) -> Reply:
        return Reply(200, {"you_sent": seen.headers["authorization"]}, {"X-Echo": token})

    any_stack.upstream.script("GET", "/api/hostile.echo", echo)
    # When called / Then the answer is kept, without the token
    call = tenant_of.wait(_submit(tenant_of, "slack", user, "hostile.echo"))
    assert call["status"] == "completed"
    assert call["output"] == {"you_sent": "Bearer [redacted]"}
    assert call["headers"]["x-echo"] == "[redacted]"


# --- no cookie rides from one tenant to another -----------------------------------------------


def test_a_cookie_set_for_one_tenant_never_reaches_another(any_stack: Stack) -> None:
    # Given an upstream that sets a session cookie on tenant A's call
    any_stack.upstream.script(
        "GET",
        "/api/hostile.cookie",
        Reply(200, {"ok": True}, {"Set-Cookie": "session=tenant-a-only; Path=/"}),
    )
    with new_caller(any_stack, "cookie-a") as a, new_caller(any_stack, "cookie-b") as b:
        a.connect("slack", "u-a", {"access_token": "xoxb-a"})
        b.connect("slack", "u-b", {"access_token": "xoxb-b"})
        first = a.wait(_submit(a, "slack", "u-a", "hostile.cookie"))
        # When tenant B calls the same host afterwards, and A again
        second = b.wait(_submit(b, "slack", "u-b", "hostile.cookie"))
        third = a.wait(_submit(a, "slack", "u-a", "hostile.cookie"))
    # Then no request carried the cookie, and no answer shows it
    assert first["status"] == second["status"] == third["status"] == "completed"
    for seen in any_stack.upstream.requests_to("/api/hostile.cookie")[-3:]:
        assert "cookie" not in seen.headers
    assert "set-cookie" not in first["headers"]


# --- bombs ------------------------------------------------------------------------------------


def test_an_upstream_compression_bomb_is_cut_without_growing_the_worker(
    any_stack: Stack, tenant_of: Caller
) -> None:
    # Given an upstream answering a 256 MiB brotli bomb (a few hundred bytes on the wire)
    bomb = brotli_bomb(256 * MIB)
    any_stack.upstream.script(
        "GET",
        "/api/hostile.bomb",
        Reply(200, bomb, {"Content-Encoding": "br", "Content-Type": "application/octet-stream"}),
    )
    user = f"u-bomb-{secrets.token_hex(3)}"
    tenant_of.connect("slack", user, {"access_token": "xoxb-bomb"})
    before = peak_rss_mib(worker_pid(any_stack))
    # When called
    call = tenant_of.wait(_submit(tenant_of, "slack", user, "hostile.bomb"))
    # Then the answer is kept up to the 10 MiB cap, flagged, and the worker's peak memory
    # grew by far less than the bomb
    grew = peak_rss_mib(worker_pid(any_stack)) - before
    print(f"worker peak RSS grew by {grew:.1f} MiB reading a 256 MiB brotli bomb")
    assert call["status"] == "completed", call
    assert call["output_truncated"] is True
    assert grew < 128


def test_a_receiver_answering_a_bomb_costs_the_worker_nothing(
    httpx_stack: Stack, upstream: Upstream
) -> None:
    # Given a receiver that answers every webhook with a 256 MiB brotli bomb
    bomb = brotli_bomb(256 * MIB)
    hook = f"/hook-bomb-{secrets.token_hex(3)}"
    upstream.script("POST", hook, Reply(200, bomb, {"Content-Encoding": "br"}))
    before = peak_rss_mib(worker_pid(httpx_stack))
    with new_caller(httpx_stack, "bomb-rx") as owner:
        owner.connect("slack", "u-rx", {"access_token": "xoxb-rx"})
        ids = [
            _submit(
                owner, "slack", "u-rx", "conversations.list", callback_url=upstream.origin + hook
            )
            for _ in range(5)
        ]
        for call_id in ids:
            owner.wait(call_id)

        def delivered() -> bool:
            items = [owner.http.get(f"/function-calls/{i}/deliveries").json()["items"] for i in ids]
            return all(d and d[0]["status"] == "succeeded" for d in items)

        # When the events are delivered / Then each is, and the worker read none of the bomb
        wait_until(delivered, WAIT_S, "five deliveries")
        request = upstream.requests_to(hook)[0]
        assert request.headers["accept-encoding"] == "identity"
    grew = peak_rss_mib(worker_pid(httpx_stack)) - before
    print(f"worker peak RSS grew by {grew:.1f} MiB for 5 receivers answering 256 MiB bombs")
    assert grew < 64


class Dripper:
    """A receiver that accepts, reads the request and answers one byte every half second,
    never finishing its status line in time."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\n" * 100:
                    if self._stop.is_set():
                        return
                    conn.send(bytes([byte]))
                    time.sleep(0.5)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_a_dripping_receiver_never_holds_the_threads_calls_need(httpx_stack: Stack) -> None:
    # Given more webhook deliveries to a receiver that drips its answer than the worker has
    # threads (8), each allowed 12 s in all
    dripper = Dripper()
    try:
        with new_caller(httpx_stack, "drip") as owner:
            owner.connect("slack", "u-drip", {"access_token": "xoxb-drip"})
            hooked = [
                _submit(
                    owner,
                    "slack",
                    "u-drip",
                    "conversations.list",
                    callback_url=f"http://127.0.0.1:{dripper.port}/in",
                )
                for _ in range(12)
            ]
            for call_id in hooked:
                owner.wait(call_id)
            wait_until(lambda: dripper.accepted >= 12, WAIT_S, "12 dripping deliveries")
            # When a call is made while they drip
            call = owner.wait(_submit(owner, "slack", "u-drip", "conversations.list"))
            assert call["status"] == "completed"

            # Then each attempt ends at its total deadline, recorded as such
            def deliveries() -> list[dict[str, Any]]:
                return [
                    owner.http.get(f"/function-calls/{i}/deliveries").json()["items"][0]
                    for i in hooked
                ]

            wait_until(
                lambda: all(d["attempts"] for d in deliveries()),
                WAIT_S,
                "the dripping attempts to end",
            )
            attempts = [d["attempts"][0] for d in deliveries()]
            assert {a["error"] for a in attempts} == {"no answer within 12 s"}
            # and the call completed while every one of them was still in flight
            finished = datetime.fromisoformat(call["finished_at"])
            for a in attempts:
                started = datetime.fromisoformat(a["started_at"])
                assert started < finished < started + timedelta(milliseconds=a["duration_ms"])
    finally:
        dripper.close()


# --- an upstream asking to wait forever --------------------------------------------------------


def test_retry_after_infinity_ends_the_call(stack: Stack, caller: Caller) -> None:
    caller.connect("slack", "u-inf", {"access_token": "xoxb-inf"})
    stack.upstream.script(
        "GET", "/api/hostile.inf", Reply(429, {"ok": False}, {"Retry-After": "inf"})
    )
    r = caller.http.post(
        "/slack-passthrough-request",
        json={"method": "GET", "url": "hostile.inf"},
        headers={"X-User-ID": "u-inf"},
    )
    call = caller.wait(r.json()["id"])
    assert (call["status"], call["error"]) == ("failed", "rate_limited")


# --- egress ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(own_stack: OwnStack, upstream: Upstream) -> Iterator[Stack]:
    """Private networks refused for onward calls and webhooks, and an app whose host is
    `localhost` (no override: the worker resolves it itself)."""
    env = {"PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false"}
    apps = {
        "loopy": {
            "name": "Loopy",
            "base_url": f"http://localhost:{upstream.port}/loopy",
            "allowed_hosts": ["localhost"],
            "auth": {"type": "bearer"},
        }
    }
    with own_stack("strict-logs", env, apps=apps) as s:
        yield s


def test_a_name_resolving_to_loopback_is_refused_for_calls_and_webhooks(
    strict: Stack, upstream: Upstream
) -> None:
    hook = f"/hook-strict-{secrets.token_hex(3)}"
    with new_caller(strict, "strict") as owner:
        owner.connect("loopy", "u-l", {"access_token": "t-loop"})
        owner.connect("slack", "u-l", {"access_token": "xoxb-loop"})
        # When a call's host resolves to loopback
        loop_call = owner.wait(_submit(owner, "loopy", "u-l", "ping"))
        # Then it fails unsent, saying which setting would allow it
        assert (loop_call["status"], loop_call["error"]) == ("failed", "destination_forbidden")
        assert "PASSTHRU_ALLOW_PRIVATE_NETWORKS" in loop_call["error_message"]
        assert upstream.requests_to("/loopy/ping") == []
        # And a callback to a name resolving to loopback (the API refuses `localhost` and
        # address literals at once; this name only the worker's lookup reveals) is refused
        # by the webhook policy, which no upstream override (this stack overrides slack.com
        # to loopback) exempts
        name = socket.gethostname()
        if not any(
            info[4][0].startswith("127.") for info in socket.getaddrinfo(name, upstream.port)
        ):
            pytest.skip(f"{name} does not resolve to loopback on this machine")
        call = owner.wait(
            _submit(
                owner,
                "slack",
                "u-l",
                "conversations.list",
                callback_url=f"http://{name}:{upstream.port}{hook}",
            )
        )
        assert call["status"] == "completed"

        def attempted() -> list[dict[str, Any]]:
            items = owner.http.get(f"/function-calls/{call['id']}/deliveries").json()["items"]
            return list(items[0]["attempts"]) if items else []

        wait_until(lambda: bool(attempted()), WAIT_S, "the webhook attempt")
        error = attempted()[0]["error"]
        assert error.startswith(
            f"destination_forbidden: {name.lower()} resolves to an address that is not public"
        )
        assert "127." not in error  # (the address is logged for the operator, not shown)
        assert "PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in error
        assert upstream.requests_to(hook) == []
