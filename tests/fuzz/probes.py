"""Requests the harness sends itself, with plain httpx, and what the contract says of each answer.

Explicit values: every listed `Prefer`, `?wait=` and callback URL once, on requests that are
otherwise valid, so each reaches the code that reads it. Hostile requests: what a schema-driven
generator never writes (deep nesting, NUL characters, bodies over the size limit, a huge
header, `%00` in a path id, bytes that are not UTF-8).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fuzz.stack import MAX_WAIT_S, Target
from tests.fuzz.values import (
    CALLBACK_OTHER,
    CALLBACK_REFUSED,
    PREFER_OK,
    PREFER_OTHER,
    PREFER_REFUSED,
    WAIT_OK,
    WAIT_OTHER,
    WAIT_REFUSED,
)

MIB = 1024 * 1024
# How long a valid wait may take end to end: PASSTHRU_MAX_WAIT_S, plus room for a busy machine
# (eight probes at once on two cores); a wait the cap did not hold would take up to 60 s.
WAIT_SLACK_S = 10.0

# An expectation: given the status and the decoded body, None or what is wrong.
Expect = Callable[[int, Any], str | None]


def any_answer(status: int, payload: Any) -> str | None:
    return None  # no 5xx and the error shape are checked for every answer


def status_in(*wanted: int) -> Expect:
    def check(status: int, payload: Any) -> str | None:
        return None if status in wanted else f"expected {' or '.join(map(str, wanted))}"

    return check


def client_error(status: int, payload: Any) -> str | None:
    return None if 400 <= status < 500 else "expected a 4xx"


def success(status: int, payload: Any) -> str | None:
    return None if 200 <= status < 300 else "expected a 2xx"


def batch_item_refused(status: int, payload: Any) -> str | None:
    """A batch validates each call alone: the call is rejected (or the whole batch is a 400)."""
    if status == 400:
        return None
    if status == 202 and isinstance(payload, dict) and payload.get("rejected"):
        return None
    return "expected the call in `rejected` (or a 400)"


@dataclass
class Probe:
    name: str  # what this one request is; findings list it among their examples
    method: str
    path: str
    expect: Expect = any_answer
    json_body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    chunked: bool = False
    max_elapsed_s: float | None = None  # a valid wait must end within PASSTHRU_MAX_WAIT_S
    shell_body: str | None = None  # Python that prints the body, for big reproducers
    group: str = ""  # requests that fail alike are reported together; default: the name
    repeat: int = 1  # sent this many times; the last answer counts

    def __post_init__(self) -> None:
        self.group = self.group or self.name

    def body(self) -> bytes | None:
        if self.content is not None:
            return self.content
        if self.json_body is not None:
            return json.dumps(self.json_body).encode()
        return None

    def request_headers(self, target: Target) -> dict[str, str]:
        out = dict(target.headers) if self.auth else {}
        if self.body() is not None:
            out["Content-Type"] = "application/json"
        out.update(self.headers)
        return out


@dataclass
class Outcome:
    probe: Probe
    status: int | None
    elapsed_s: float
    content: bytes = b""
    network_error: str | None = None  # "timeout" or "dropped: ..."


def send(
    target: Target,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout_s: float,
    chunked: bool = False,
) -> tuple[int | None, bytes, float, str | None]:
    """One request on a connection of its own: (status, body, seconds, network error)."""
    content: Any = body
    if chunked and body is not None:
        content = iter([body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)])
    url = target.base_url + path
    with httpx.Client(timeout=timeout_s) as http:
        request = http.build_request(method, url, headers=headers, content=content)
        try:
            response = http.send(request)
        except httpx.TimeoutException:
            return None, b"", timeout_s, "timeout"
        except httpx.TransportError as exc:
            return None, b"", 0.0, f"dropped: {type(exc).__name__}: {exc}"
        return response.status_code, response.content, response.elapsed.total_seconds(), None


def run(target: Target, probes: list[Probe], timeout_s: float, parallel: int = 8) -> list[Outcome]:
    """Send every probe (a few at once: held requests must not serialize the run)."""

    def one(probe: Probe) -> Outcome:
        for _ in range(probe.repeat):
            status, content, elapsed, error = send(
                target,
                probe.method,
                probe.path,
                probe.request_headers(target),
                probe.body(),
                timeout_s,
                probe.chunked,
            )
        return Outcome(probe, status, elapsed, content, error)

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, probes))


# --- explicit values --------------------------------------------------------------------------


def _submissions(target: Target, extra: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(label, path, body) of one valid submission in each form, with `extra` fields added."""
    params = {"method": "GET", "url": "conversations.list"}
    return [
        ("passthrough", "/slack-passthrough-request", {**params, **extra}),
        (
            "function-calls",
            "/function-calls",
            {"function": "slack-passthrough-request", "params": params, **extra},
        ),
    ]


def explicit_probes(target: Target) -> list[Probe]:
    probes: list[Probe] = []
    for values, expect, limit in (
        (PREFER_OK, success, MAX_WAIT_S + WAIT_SLACK_S),
        (PREFER_REFUSED, status_in(400), None),
        (PREFER_OTHER, any_answer, None),
    ):
        for prefer in values:
            for label, path, body in _submissions(target, {}):
                probes.append(
                    Probe(
                        f"{prefer[:40]} ({label})",
                        "POST",
                        path,
                        expect,
                        json_body=body,
                        headers={"Prefer": prefer},
                        max_elapsed_s=limit,
                        group="Prefer on submissions",
                    )
                )
    for waits, expect, limit in (
        (WAIT_OK, status_in(200), MAX_WAIT_S + WAIT_SLACK_S),
        (WAIT_REFUSED, status_in(400), None),
        (WAIT_OTHER, any_answer, None),
    ):
        for wait in waits:
            probes.append(
                Probe(
                    f"wait={wait[:40]}",
                    "GET",
                    f"/function-calls/{target.call_id}?wait={wait}",
                    expect,
                    max_elapsed_s=limit,
                    group="?wait= on GET /function-calls/{id}",
                )
            )
    for urls, refused in ((CALLBACK_REFUSED, True), (CALLBACK_OTHER, False)):
        for url in urls:
            short = json.dumps(url)[:50]
            for label, path, body in _submissions(target, {"callback_url": url}):
                probes.append(
                    Probe(
                        f"{short} ({label})",
                        "POST",
                        path,
                        status_in(400) if refused else any_answer,
                        json_body=body,
                        group="callback_url on submissions",
                    )
                )
            call = {
                "function": "slack-passthrough-request",
                "params": {"method": "GET", "url": "conversations.list"},
                "callback_url": url,
            }
            probes.append(
                Probe(
                    short,
                    "POST",
                    "/function-calls/batch",
                    batch_item_refused if refused else any_answer,
                    json_body={"calls": [call]},
                    group="callback_url in a batch",
                )
            )
            probes.append(
                Probe(
                    short,
                    "PUT",
                    "/webhook-endpoint",
                    status_in(400) if refused else any_answer,
                    json_body={"url": url},
                    group="url of PUT /webhook-endpoint",
                )
            )
    return probes


# --- hostile requests ------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    return json.loads("[" * depth + "]" * depth)


def hostile_probes(target: Target) -> list[Probe]:
    call = {"method": "GET", "url": "conversations.list"}
    submit = "/slack-passthrough-request"
    big = b'{"method": "GET", "url": "conversations.list", "body": "' + b"x" * (6 * MIB) + b'"}'
    big_shell = (
        """print('{"method": "GET", "url": "conversations.list", "body": "'"""
        """ + 'x' * 6 * 2**20 + '"}')"""
    )
    big_batch_call = {
        "function": "slack-passthrough-request",
        "params": {**call, "body": "x" * (30 * 1024)},
    }
    return [
        # Depth: pydantic refuses 256 levels of JSON; orjson (JSON columns, the idempotency
        # fingerprint) stops at 255.
        Probe("body nested 300 deep", "POST", submit, client_error, {**call, "body": _nested(300)}),
        Probe("body nested 255 deep", "POST", submit, any_answer, {**call, "body": _nested(255)}),
        Probe(
            "body nested 254 deep, same Idempotency-Key twice",
            "POST",
            submit,
            any_answer,
            {**call, "body": _nested(254)},
            headers={"Idempotency-Key": "fuzz-deep-254"},
            repeat=2,
        ),
        Probe(
            "batch call body nested 255 deep",
            "POST",
            "/function-calls/batch",
            any_answer,
            {
                "calls": [
                    {
                        "function": "slack-passthrough-request",
                        "params": {**call, "body": _nested(255)},
                    }
                ]
            },
        ),
        Probe(
            "connection_config nested 300 deep",
            "POST",
            "/connected-accounts",
            client_error,
            {
                "app": "slack",
                "credentials": {"access_token": "t"},
                "connection_config": {"a": _nested(300)},
            },
        ),
        # NUL characters, where a string is stored or compared.
        Probe("NUL in body", "POST", submit, any_answer, {**call, "body": "a\u0000b"}),
        Probe(
            "NUL in url", "POST", submit, client_error, {**call, "url": "conversations\u0000.list"}
        ),
        Probe(
            "NUL in a header value",
            "POST",
            submit,
            any_answer,
            {**call, "headers": {"X-A": "a\u0000b"}},
        ),
        Probe(
            "NUL in connected_account_id",
            "POST",
            submit,
            client_error,
            {**call, "connected_account_id": "ca_\u0000"},
        ),
        Probe(
            "NUL in user_id",
            "POST",
            "/function-calls",
            client_error,
            {"function": "slack-passthrough-request", "params": call, "user_id": "u\u0000"},
        ),
        Probe(
            "NUL in credentials",
            "POST",
            "/connected-accounts",
            any_answer,
            {"app": "slack", "credentials": {"access_token": "t\u0000"}},
        ),
        Probe("NUL in app filter", "GET", "/function-calls?app=%00&user_id=%00", any_answer),
        # Sizes: PASSTHRU_MAX_REQUEST_BYTES (5 MiB) and the batch's 20 MiB; 413 before parsing
        # and before authentication.
        Probe("6 MiB body", "POST", submit, status_in(413), content=big, shell_body=big_shell),
        Probe(
            "6 MiB body, no API key",
            "POST",
            submit,
            status_in(413),
            content=big,
            auth=False,
            headers={"Content-Type": "application/json"},
            shell_body=big_shell,
        ),
        Probe(
            "6 MiB body, chunked (no Content-Length)",
            "POST",
            submit,
            status_in(413),
            content=big,
            chunked=True,
            shell_body=big_shell,
        ),
        Probe(
            "22 MiB batch",
            "POST",
            "/function-calls/batch",
            status_in(413),
            {"calls": [big_batch_call] * 750},
            shell_body="import json; print(json.dumps({'calls': [{'function': "
            "'slack-passthrough-request', 'params': {'method': 'GET', 'url': "
            "'conversations.list', 'body': 'x' * 30 * 1024}}] * 750}))",
        ),
        Probe(
            "chunked body, no API key",
            "POST",
            submit,
            status_in(401),
            content=big,
            chunked=True,
            auth=False,
            headers={"Content-Type": "application/json"},
            shell_body=big_shell,
        ),
        # Shapes a byte count does not catch: many tiny containers or values; 413 unparsed.
        *(
            Probe(
                f"{count:,} of {unit.decode()}",
                "POST",
                submit,
                status_in(413),
                content=b'{"method": "POST", "url": "x", "body": ['
                + unit * count
                + unit.rstrip(b",")
                + b"]}",
                shell_body=f'print(\'{{"method": "POST", "url": "x", "body": [\' '
                f"+ '{unit.decode()}' * {count} + '{unit.decode().rstrip(',')}]}}')",
            )
            for unit, count in ((b"[],", 300_000), (b"0,", 1_100_000))
        ),
        # Credentials that could not be sent as they are.
        Probe(
            "line break in a token",
            "POST",
            "/connected-accounts",
            status_in(400),
            {"app": "slack", "credentials": {"access_token": "t\r\nX-Injected: 1"}},
        ),
        Probe(
            "20 KiB API key",
            "POST",
            "/connected-accounts",
            status_in(400),
            {"app": "close", "credentials": {"api_key": "k" * 20_000}},
        ),
        # Headers.
        Probe(
            "64 KiB X-User-ID, account",
            "POST",
            "/connected-accounts",
            client_error,
            {"app": "slack", "credentials": {"access_token": "t"}},
            headers={"X-User-ID": "u" * 64 * 1024},
        ),
        Probe(
            "10 KiB X-User-ID, account",
            "POST",
            "/connected-accounts",
            any_answer,
            {"app": "slack", "credentials": {"access_token": "t"}},
            headers={"X-User-ID": "u" * 10 * 1024},
        ),
        Probe(
            "10 KiB X-User-ID, call",
            "POST",
            submit,
            any_answer,
            call,
            headers={"X-User-ID": "u" * 10 * 1024},
        ),
        Probe(
            "10 KiB Idempotency-Key",
            "POST",
            submit,
            client_error,
            call,
            headers={"Idempotency-Key": "k" * 10 * 1024},
        ),
        # %00 in path ids.
        Probe("%00 call id", "GET", "/function-calls/%00", status_in(404, 400)),
        Probe("%00 call id, wait", "GET", "/function-calls/%00?wait=0.1", status_in(404, 400)),
        Probe("%00 call id, cancel", "POST", "/function-calls/%00/cancel", status_in(404, 400)),
        Probe(
            "%00 call id, deliveries", "GET", "/function-calls/%00/deliveries", status_in(404, 400)
        ),
        Probe(
            "%00 account id, PATCH",
            "PATCH",
            "/connected-accounts/%00",
            status_in(404, 400),
            {"status": "active"},
        ),
        Probe("%00 account id, DELETE", "DELETE", "/connected-accounts/%00", status_in(404, 400)),
        Probe("%00 batch id", "GET", "/batches/%00", status_in(404, 400)),
        Probe("%00 app slug", "GET", "/apps/%00", status_in(404, 400)),
        Probe(
            "%00 app in a submission",
            "POST",
            "/slack%00-passthrough-request",
            status_in(404, 400),
            call,
        ),
        # Bytes and numbers JSON parsers disagree on.
        Probe(
            "body not UTF-8",
            "POST",
            submit,
            status_in(400),
            content=b'{"method": "GET", "url": "\xff\xfe"}',
        ),
        Probe("empty body", "POST", submit, status_in(400), content=b""),
        Probe(
            "JSON as text/plain",
            "POST",
            submit,
            client_error,
            call,
            headers={"Content-Type": "text/plain"},
        ),
        Probe(
            "5000-digit integer",
            "POST",
            submit,
            status_in(400),
            content=b'{"method": "GET", "url": "x", "retry": {"max_attempts": '
            + b"9" * 5000
            + b"}}",
        ),
        Probe(
            "NaN and Infinity literals",
            "POST",
            submit,
            any_answer,
            content=b'{"method": "GET", "url": "x", "body": [NaN, Infinity], '
            b'"timeout": {"connect_s": NaN}}',
        ),
        Probe(
            "50,000 call headers",
            "POST",
            submit,
            any_answer,
            {**call, "headers": {f"X-H{i}": "v" for i in range(50_000)}},
        ),
        Probe(
            "1 MiB url",
            "POST",
            submit,
            client_error,
            {**call, "url": "conversations.list?" + "q" * MIB},
        ),
    ]
