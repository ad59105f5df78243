"""The chaos run (`python -m bench.chaos`): 2,000 mixed GET/POST calls against an upstream
that randomly answers 200/429/500/503, drops connections and stalls, while a worker is
killed twice and Redis is restarted once, every setting at its default. Reports calls
terminal, calls lost, duplicate non-idempotent sends, attempts per call, and the time from
the last fault to the last call's end. A benchmark-style run, not a test."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from api.dev.harness import Proc
from bench import scenarios as sc
from bench.stack import Stack, stack

# Answers after which a POST must never be sent again: it was (or may have been) acted on.
ACTED_ON = {"200", "500", "drop", "stall"}


def _kill(s: Stack, proc: Proc, replacement: str) -> Proc:
    sc.say(f"kill -9 {proc.name}; starting {replacement}")
    s.processes.stop(proc.name, kill=True)
    return s.start_worker(replacement)


def _report(s: Stack, n: int, last_fault: datetime) -> dict[str, Any]:
    with s.engine.connect() as conn:
        rows = conn.execute(text("SELECT status, error, attempt_count FROM function_call")).all()
        last_end = conn.execute(text("SELECT max(finished_at) FROM function_call")).scalar_one()
    history: dict[str, list[str]] = httpx.get(f"{s.upstream_url}/_history").json()
    duplicates = 0
    for key, kinds in history.items():
        if key.startswith("POST "):
            for i, kind in enumerate(kinds[:-1]):
                if kind in ACTED_ON:
                    duplicates += len(kinds) - i - 1
                    break
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for status, error, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
        if error:
            errors[error] = errors.get(error, 0) + 1
    attempts = [a for _, _, a in rows]
    terminal = sum(statuses.get(k, 0) for k in ("completed", "failed", "cancelled"))
    return {
        "calls": n,
        "terminal": terminal,
        "lost": n - terminal,
        "statuses": statuses,
        "errors": errors,
        "duplicate_post_sends": duplicates,
        "last_fault_to_last_end_s": round((_utc(last_end) - last_fault).total_seconds(), 1),
        "attempts_per_call": {
            "mean": round(sum(attempts) / len(attempts), 2),
            "max": max(attempts),
        },
    }


def _utc(value: datetime | str) -> datetime:
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def run(db: str, n: int) -> dict[str, Any]:
    with stack(db, upstream=["bench.chaos_upstream"]) as s:
        key = sc.prepare(s)
        workers = [s.start_worker("w0"), s.start_worker("w1")]
        s.start_beat()
        calls = [
            {
                "function": "bench-passthrough-request",
                "params": {
                    "method": "POST" if i % 2 else "GET",
                    "url": f"/items?n={i}",
                    **({"body": {"n": i}} if i % 2 else {}),
                },
            }
            for i in range(n)
        ]
        headers = {"Authorization": f"Bearer {key}", "X-User-ID": sc.USER}
        with httpx.Client(base_url=s.api_url, headers=headers, timeout=120) as client:
            for start in range(0, n, 1000):
                client.post(
                    "/function-calls/batch", json={"calls": calls[start : start + 1000]}
                ).raise_for_status()
        sc.say(f"{n} calls submitted")
        time.sleep(2)
        workers[0] = _kill(s, workers[0], "w2")
        time.sleep(3)
        sc.say("restarting Redis, empty")
        s.redis.restart()
        time.sleep(3)
        last_fault = datetime.now(UTC)
        workers[1] = _kill(s, workers[1], "w3")
        sc.wait_finished(s, n, timeout_s=600)
        return _report(s, n, last_fault)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    started = time.monotonic()
    report = run(args.db, args.calls)
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    return 0 if report["lost"] == 0 and report["duplicate_post_sends"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
