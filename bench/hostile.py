"""(f) Memory under hostile input, with the same figures for ordinary input as the baseline:

- the API's peak RSS while it refuses an unauthenticated 300 MiB body and a tenant's 20 MiB
  batch of 6.9 million empty arrays (parsed, some 700 MB of objects), against its peak
  after ordinary calls and after a 4 MiB body it accepts;
- a worker's peak RSS while an upstream answers a 256 MiB brotli bomb and while webhook
  receivers answer the same bomb, against its peak after ordinary calls and after an
  ordinary 10 MiB answer (the body cap).

Peaks are the kernel's VmHWM, read from /proc: they only ever grow, so each step shows
what it added on top of everything before it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench import scenarios as sc
from bench.stack import BENCH_ORIGIN, Stack, stack
from tests.bombs import MIB, brotli_bomb

HOSTILE_ORIGIN = "https://hostile-upstream.invalid"
APPS_YAML = (
    sc.APPS_YAML
    + f"""
hostile:
  name: Hostile upstream
  base_url: {HOSTILE_ORIGIN}
  allowed_hosts: [hostile-upstream.invalid]
  auth: {{type: bearer}}
"""
)
BODY_MIB = 300


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Hostile:
    """Answers GET /small, /big (10 MiB) and /bomb (256 MiB of brotli), and POST /rx/plain
    and /rx/bomb as webhook receivers."""

    def __init__(self) -> None:
        bomb = brotli_bomb(256 * MIB)
        big = b"x" * (10 * MIB)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, body: bytes, encoding: str | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/bomb"):
                    self._answer(bomb, "br")
                elif self.path.startswith("/big"):
                    self._answer(big)
                else:
                    self._answer(b'{"ok":true}')

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/rx/bomb"):
                    self._answer(bomb, "br")
                else:
                    self._answer(b"")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _chunks(total_mib: int) -> Iterator[bytes]:
    block = b"{" * MIB  # never valid JSON: nothing to parse, only bytes to refuse
    for _ in range(total_mib):
        yield block


def _api(s: Stack, key: str, api_pid: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": sc.USER}
    for _ in range(20):
        r = httpx.post(
            f"{s.api_url}/bench-passthrough-request",
            json={"method": "GET", "url": "items"},
            headers=headers,
        )
        r.raise_for_status()
    after_calls = peak_mib(api_pid)
    four_mib = {"method": "POST", "url": "items", "body": {"blob": "b" * (4 * MIB - 200)}}
    accepted = httpx.post(
        f"{s.api_url}/bench-passthrough-request", json=four_mib, headers=headers, timeout=60
    )
    after_4mib = peak_mib(api_pid)
    started = time.perf_counter()
    refused = httpx.post(
        f"{s.api_url}/function-calls",
        content=_chunks(BODY_MIB),
        headers={"Content-Type": "application/json", "Content-Length": str(BODY_MIB * MIB)},
        timeout=120,
    )
    seconds = time.perf_counter() - started
    after_300_mib = peak_mib(api_pid)
    tiny_arrays = b'{"calls": [' + b"[]," * (20 * MIB // 3 - 10) + b"[]]}"
    started = time.perf_counter()
    complex_batch = httpx.post(
        f"{s.api_url}/function-calls/batch",
        content=tiny_arrays,
        headers={**headers, "Content-Type": "application/json"},
        timeout=120,
    )
    complex_seconds = time.perf_counter() - started
    return {
        "peak_after_20_calls_mib": round(after_calls, 1),
        "four_mib_body": {"status": accepted.status_code, "peak_mib": round(after_4mib, 1)},
        "refusing_300_mib": {
            "status": refused.status_code,
            "error": refused.json().get("error") if refused.status_code < 500 else None,
            "seconds": round(seconds, 3),
            "peak_mib": round(after_300_mib, 1),
        },
        "refusing_20_mib_of_empty_arrays": {
            "status": complex_batch.status_code,
            "seconds": round(complex_seconds, 3),
            "peak_mib": round(peak_mib(api_pid), 1),
        },
    }


def _call(s: Stack, key: str, url: str, callback: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"method": "GET", "url": url}
    if callback:
        body["callback_url"] = callback
    r = httpx.post(
        f"{s.api_url}/hostile-passthrough-request",
        json=body,
        headers={"Authorization": f"Bearer {key}", "X-User-ID": sc.USER, "Prefer": "wait=30"},
        timeout=60,
    )
    r.raise_for_status()
    return dict(r.json())


def _delivered(s: Stack, key: str, call_ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = 0
        for call_id in call_ids:
            items = httpx.get(
                f"{s.api_url}/function-calls/{call_id}/deliveries",
                headers={"Authorization": f"Bearer {key}"},
            ).json()["items"]
            done += bool(items and items[0]["status"] in ("succeeded", "failed"))
        if done == len(call_ids):
            return
        time.sleep(0.2)
    raise RuntimeError("webhooks not delivered in 60 s")


def _worker(s: Stack, key: str, worker_pid: int, hostile: Hostile) -> dict[str, Any]:
    for _ in range(20):
        _call(s, key, "small")
    after_calls = peak_mib(worker_pid)
    big = _call(s, key, "big")
    after_big = peak_mib(worker_pid)
    bomb = _call(s, key, "bomb")
    after_bomb = peak_mib(worker_pid)
    plain_ids = [_call(s, key, "small", f"{hostile.origin}/rx/plain")["id"] for _ in range(5)]
    _delivered(s, key, plain_ids)
    after_plain_hooks = peak_mib(worker_pid)
    bomb_ids = [_call(s, key, "small", f"{hostile.origin}/rx/bomb")["id"] for _ in range(5)]
    _delivered(s, key, bomb_ids)
    return {
        "peak_after_20_calls_mib": round(after_calls, 1),
        "answer_10_mib": {"status": big.get("status"), "peak_mib": round(after_big, 1)},
        "answer_256_mib_bomb": {
            "status": bomb.get("status"),
            "peak_mib": round(after_bomb, 1),
        },
        "five_ordinary_webhooks_peak_mib": round(after_plain_hooks, 1),
        "five_receivers_answering_bombs_peak_mib": round(peak_mib(worker_pid), 1),
    }


def hostile(db: str) -> dict[str, Any]:
    server = Hostile()
    try:
        with stack(db) as s:
            overrides = {BENCH_ORIGIN: s.upstream_url, HOSTILE_ORIGIN: server.origin}
            s.env["PASSTHRU_UPSTREAM_OVERRIDES"] = json.dumps(overrides)
            s.env["PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
            s.env["PASSTHRU_ALLOW_PRIVATE_NETWORKS"] = "true"  # older versions: webhooks too
            key = sc.prepare(s, APPS_YAML, accounts=("bench", "hostile"))
            worker = s.start_worker("hostile")
            sc.say("(f) the API refusing a 300 MiB body")
            api_figures = _api(s, key, s.procs["api"].pid)
            sc.say("(f) a worker reading bombs from an upstream and from receivers")
            worker_figures = _worker(s, key, worker.pid, server)
    finally:
        server.close()
    return {"api": api_figures, "worker": worker_figures}


def table(r: dict[str, Any]) -> str:
    api, worker = r["api"], r["worker"]
    refusing = api["refusing_300_mib"]
    arrays = api.get("refusing_20_mib_of_empty_arrays", {})
    return "\n".join(
        [
            f"{'hostile':<16}API peak {api['peak_after_20_calls_mib']:.0f} MiB after calls, "
            f"{api['four_mib_body']['peak_mib']:.0f} MiB after a 4 MiB body, "
            f"{refusing['peak_mib']:.0f} MiB after refusing 300 MiB "
            f"({refusing['status']} in {refusing['seconds']:.2f} s), "
            f"{arrays.get('peak_mib', 0):.0f} MiB after a 20 MiB batch of empty arrays "
            f"({arrays.get('status')} in {arrays.get('seconds', 0):.2f} s)",
            f"{'':<16}worker peak {worker['peak_after_20_calls_mib']:.0f} MiB after calls, "
            f"{worker['answer_10_mib']['peak_mib']:.0f} after a 10 MiB answer, "
            f"{worker['answer_256_mib_bomb']['peak_mib']:.0f} after a 256 MiB bomb, "
            f"{worker['five_receivers_answering_bombs_peak_mib']:.0f} after 5 bombing receivers",
        ]
    )
