"""Hostile input against a real uvicorn process: a 300 MiB body is refused with a 413 the
client receives (not a reset), or a 401 before a byte is read when it has no API key,
without the API's memory growing by the body; a body of many tiny arrays is a 413 without
being parsed; a deeply nested body is a 400, not a dropped connection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from api.dev.embedded_redis import EmbeddedRedis
from api.dev.harness import Proc, Processes, environment
from models.accounts.tenants import create_tenant

# `once` (SQLite pass only): HTTP body limits in the API process, refused before any query.
pytestmark = pytest.mark.once

MIB = 1024 * 1024
HOSTILE_BYTES = 300 * MIB
# Memory is not timing: a generous bound on what refusing the body may cost the process.
MAX_GROWTH_BYTES = 200 * MIB


@dataclass
class LoneApi:
    url: str
    proc: Proc
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (the peak) of the API process, in bytes."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
        return found


@pytest.fixture(scope="module")
def lone_api(
    database_url: str,
    engine: Engine,
    encryption_key: str,
    redis_server: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LoneApi]:
    """The API alone (nothing here needs a worker), in its own process."""
    logs = tmp_path_factory.mktemp("limits-logs")
    env = environment(database_url, redis_server.url, encryption_key, PASSTHRU_METRICS_PORT="0")
    with Processes(logs, env) as processes:
        url = processes.start_api()
        _, key = create_tenant(engine, "limits")
        yield LoneApi(url, processes.procs["api"], key)


@dataclass
class Hostile:
    """300 MiB of body, streamed: never held by the client either."""

    size: int = HOSTILE_BYTES
    sent: int = field(default=0)

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"[" * MIB
        while self.sent < self.size:
            self.sent += len(chunk)
            yield chunk


@pytest.mark.parametrize(
    ("declared", "with_key", "status"),
    [(True, False, 413), (False, False, 401), (False, True, 413)],
    ids=["content-length", "chunked-without-a-key", "chunked-with-a-key"],
)
def test_a_300_mib_body_is_refused_and_costs_no_memory(
    lone_api: LoneApi,
    declared: bool,
    with_key: bool,
    status: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a client streaming 300 MiB, with or without Content-Length, with or without a key
    body = Hostile()
    headers = {"Content-Type": "application/json", **(lone_api.auth if with_key else {})}
    if declared:
        headers["Content-Length"] = str(HOSTILE_BYTES)
    before = lone_api.memory()
    # When it posts it
    response = httpx.post(
        f"{lone_api.url}/slack-passthrough-request", content=body, headers=headers, timeout=120
    )
    after = lone_api.memory()
    # Then it receives the refusal (not a reset), in the error shape, and the connection
    # closes: a 413 when the length says too much or the body grows past the limit, a 401
    # before a byte is read when it has no key
    assert response.status_code == status
    assert response.headers["connection"] == "close"
    payload = response.json()
    if status == 413:
        assert payload["error"] == "request_too_large"
        assert payload["error_details"][0]["field"] == "body"
        assert "PASSTHRU_MAX_REQUEST_BYTES" in payload["error_details"][0]["message"]
    else:
        assert payload["error"] == "unauthorized"
    # And the API's peak memory did not grow by anything like the body
    growth = after["VmHWM"] - before["VmHWM"]
    assert growth < MAX_GROWTH_BYTES
    with capsys.disabled():
        print(
            f"\n[limits] {'declared' if declared else 'chunked'} 300 MiB "
            f"({'with' if with_key else 'without'} a key): {status}, client sent "
            f"{body.sent / MIB:.0f} MiB; API VmHWM {before['VmHWM'] / MIB:.1f} -> "
            f"{after['VmHWM'] / MIB:.1f} MiB, VmRSS {before['VmRSS'] / MIB:.1f} -> "
            f"{after['VmRSS'] / MIB:.1f} MiB"
        )
    # And the API serves on
    assert httpx.get(f"{lone_api.url}/healthz").status_code == 200


def test_a_batch_of_tiny_arrays_is_a_413_without_being_parsed(
    lone_api: LoneApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch within its 20 MiB made of 6.9 million empty arrays: parsed, it would
    # cost the API some 700 MB
    raw = b'{"calls": [' + b"[]," * (20 * MIB // 3 - 10) + b"[]]}"
    assert len(raw) <= 20 * MIB
    before = lone_api.memory()
    # When a tenant posts it
    response = httpx.post(
        f"{lone_api.url}/function-calls/batch",
        content=raw,
        headers={"Content-Type": "application/json", **lone_api.auth},
        timeout=120,
    )
    after = lone_api.memory()
    # Then it is a 413 naming the body, and the API's peak grew by little more than the body
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "request_too_large"
    assert "arrays and objects" in response.json()["error_details"][0]["message"]
    growth = after["VmHWM"] - before["VmHWM"]
    assert growth < MAX_GROWTH_BYTES
    with capsys.disabled():
        print(
            f"\n[limits] 20 MiB batch of empty arrays: API VmHWM "
            f"{before['VmHWM'] / MIB:.1f} -> {after['VmHWM'] / MIB:.1f} MiB"
        )


def test_a_deeply_nested_body_is_a_400_not_a_dropped_connection(lone_api: LoneApi) -> None:
    # Given a body nesting 300 levels (and one past what the parser takes at all)
    for levels in (300, 5000):
        raw = b'{"method": "GET", "url": "x", "body": ' + b"[" * levels + b"]" * levels + b"}"
        # When posted / Then the client gets a 400 in the error shape
        response = httpx.post(
            f"{lone_api.url}/slack-passthrough-request",
            content=raw,
            headers={"Content-Type": "application/json", **lone_api.auth},
        )
        assert response.status_code == 400, levels
        assert set(response.json()) == {"error", "error_details"}


def test_a_nul_in_the_path_is_a_400(lone_api: LoneApi) -> None:
    response = httpx.get(f"{lone_api.url}/function-calls/fc_%00")
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "path"
