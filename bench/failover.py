"""Failover timing (`python -m bench.failover`): two workers and beat at the default
settings, 40 slow calls (3 s each, interactive) and a 1,000-call batch in flight, and one
worker killed with -9 while it runs them. Measured from the kill:
- `taken_back_s`: until no call is left `running` on the dead process;
- `resumed_s`: until every call that was unfinished on it has started again elsewhere (or
  ended);
- `all_ended_s`: until every call is final.
The baseline, in the same run: the same load with no kill (`all_ended_s` from the moment a
kill would have come). A benchmark, not a test."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

import httpx
from sqlalchemy import text

from bench import scenarios as sc
from bench.stack import Stack, stack

SLOW, BULK = 40, 1000
SLOW_MS = 3000
BULK_MS = 200


def _submit(s: Stack, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": sc.USER}
    with httpx.Client(base_url=s.api_url, headers=headers, timeout=60) as client:
        calls = [
            {
                "function": "bench-passthrough-request",
                "params": {"method": "GET", "url": f"/bulk?i={i}&delay_ms={BULK_MS}"},
            }
            for i in range(BULK)
        ]
        client.post("/function-calls/batch", json={"calls": calls}).raise_for_status()
        for i in range(SLOW):
            body = {"method": "GET", "url": f"/slow?i={i}&delay_ms={SLOW_MS}"}
            client.post("/bench-passthrough-request", json=body).raise_for_status()


def _running_by_worker(s: Stack) -> dict[str, list[str]]:
    with s.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, claimed_by FROM function_call WHERE status = 'running'")
        ).all()
    held: dict[str, list[str]] = {}
    for call_id, worker in rows:
        held.setdefault(worker or "", []).append(call_id)
    return held


def _states(s: Stack, ids: list[str]) -> list[tuple[str, str | None]]:
    with s.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, status, claimed_by FROM function_call WHERE status <> 'completed'")
        ).all()
    wanted = set(ids)
    return [(status, worker) for call_id, status, worker in rows if call_id in wanted]


def run(db: str, kill: bool) -> dict[str, Any]:
    with stack(db) as s:
        key = sc.prepare(s)
        workers = [s.start_worker("w0"), s.start_worker("w1")]
        s.start_beat()
        _submit(s, key)
        # Wait until one worker runs at least 15 slow calls: the one to kill.
        deadline = time.monotonic() + 60
        while True:
            held = _running_by_worker(s)
            victim = max(held, key=lambda w: len(held[w]), default="")
            if victim and len(held[victim]) >= 15:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no worker took the slow calls")
            time.sleep(0.05)
        with s.engine.connect() as conn:
            unfinished = [
                r.id
                for r in conn.execute(
                    text(f"SELECT id FROM function_call WHERE status NOT IN {sc.FINAL}")
                )
            ]
        mine = held[victim]
        at = time.perf_counter()
        if kill:
            pid = int(victim.split(":")[-2])
            proc = next((p for p in workers if p.pid == pid), None)
            if proc is None:  # an interactive lane's process (worker/lane_process.py)
                sc.say(f"kill -9 the lane process {pid} holding {len(mine)} running calls")
                os.kill(pid, signal.SIGKILL)
            else:
                sc.say(f"kill -9 {proc.name} holding {len(mine)} running calls")
                s.processes.stop(proc.name, kill=True)
        marks: dict[str, float] = {}
        total = SLOW + BULK
        while sc.finished(s) < total:
            now = time.perf_counter() - at
            states = _states(s, mine)
            if "taken_back_s" not in marks and not any(
                w == victim for st, w in states if st == "running"
            ):
                marks["taken_back_s"] = round(now, 2)
            if "resumed_s" not in marks and all(
                st == "running" and w != victim for st, w in states
            ):
                marks["resumed_s"] = round(now, 2)
            if now > 300:
                raise RuntimeError(f"only {sc.finished(s)} of {total} calls ended in 300 s")
            time.sleep(0.1)
        marks["all_ended_s"] = round(time.perf_counter() - at, 2)
        marks.setdefault("resumed_s", marks["all_ended_s"])
        marks.setdefault("taken_back_s", marks["resumed_s"])
        return {
            "killed": kill,
            "running_on_victim": len(mine),
            "unfinished_at_kill": len(unfinished),
            **marks,
        }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    report = {"baseline (no kill)": run(args.db, kill=False), "kill -9": run(args.db, kill=True)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
