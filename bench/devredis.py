"""What `passthru dev`'s fakeredis fallback costs, against redis-server, in one run.

    python -m bench.devredis [--calls 5000] [--waits 30] [--runs 1]

Each case is `passthru dev --redis KIND` itself, started in a temporary directory as a user
runs it (SQLite, API, one worker, beat, Flower, the demo upstream); only the Redis differs.
On each: the Redis's CPU while passthru is idle (10 s); the banner's call (`Prefer: wait=10`
to the demo upstream) `--waits` times in a row, after one not counted (latency); then
`--calls` calls to the demo upstream through the batch API, 1,000 per batch, timed from the
first submission until `GET /batches/{id}` says every call has finished (throughput). The
two kinds alternate in order from one run to the next. Prints a table and writes JSON to
bench/results/. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.dev.demo_data import DEMO_USER
from api.dev.demo_upstream import DEMO_ORIGIN
from api.dev.embedded_redis import free_port
from bench.__main__ import run_header, write_results
from bench.scenarios import percentiles, say
from bench.stack import rss_mib

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("redis-server", "fakeredis")
START_TIMEOUT_S = 180.0
BATCH = 1000  # the batch API's largest batch


@dataclass
class Dev:
    kind: str
    process: subprocess.Popen[bytes]
    log: Path
    api_url: str
    api_key: str
    started_s: float  # from start to the banner

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}", "X-User-ID": DEMO_USER}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=120)

    def redis_pids(self) -> dict[str, int]:
        """The dev process (fakeredis serves from it) and its redis-server child, if any."""
        out = {"dev_process": self.process.pid}
        for pid in _children(self.process.pid):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server":
                out["redis_server"] = pid
        return out

    def cpu_s(self) -> dict[str, float]:
        return {name: _cpu_s(pid) for name, pid in self.redis_pids().items()}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def _kill_left_behind(pids: list[int], cwd: str) -> None:
    """Kill what `passthru dev` started and did not stop (it should stop everything)."""
    for pid in pids:
        try:
            ours = os.readlink(f"/proc/{pid}/cwd") == cwd  # not a new process on that pid
            if ours or Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server":
                say(f"pid {pid} outlived passthru dev: killed")
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone, as it should be


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if found := re.search(pattern, text, re.M):
            return found
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"passthru dev: no {pattern!r}:\n{text[-4000:]}")
        time.sleep(0.2)


@contextmanager
def dev(kind: str) -> Iterator[Dev]:
    """`passthru dev --redis KIND` in a fresh directory, until the worker is ready."""
    with tempfile.TemporaryDirectory(prefix="passthru-devredis-") as tmpdir:
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PASSTHRU_", "REDIS_URL", "DATABASE_URL", "FLOWER_"))
        }
        env.update({"PORT": str(port), "FLOWER_PORT": str(free_port()), "PYTHONPATH": str(ROOT)})
        log = Path(tmpdir) / "dev.log"
        started = time.perf_counter()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "dev", "--redis", kind],
                cwd=tmpdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            key = _wait_for(log, r"^  API key +(pt_\S+)", process)[1]
            banner_s = time.perf_counter() - started
            _wait_for(log, r"^ *worker \| .* ready\.$", process)
            yield Dev(kind, process, log, f"http://127.0.0.1:{port}", key, banner_s)
        finally:
            children = _children(process.pid) if process.poll() is None else []
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _kill_left_behind(children, tmpdir)


def banner_calls(d: Dev, n: int) -> dict[str, Any]:
    """The banner's call, n times in a row (after one not counted); latency in ms."""
    body = {"method": "GET", "url": f"{DEMO_ORIGIN}/api/hello?name=passthru"}
    latencies, not_200 = [], 0
    with d.client() as client:
        for i in range(n + 1):
            t = time.perf_counter()
            r = client.post("/demo-passthrough-request", json=body, headers={"Prefer": "wait=10"})
            if i:
                latencies.append((time.perf_counter() - t) * 1000)
                not_200 += r.status_code != 200 or r.json().get("network_code") != "200"
    return {"calls": n, "ms": percentiles(latencies), "not_200": not_200}


def throughput(d: Dev, n: int) -> dict[str, Any]:
    """n calls to the demo upstream in batches; first submission to the last one finished."""
    calls = [
        {
            "function": "demo-passthrough-request",
            "params": {"method": "GET", "url": f"hello?name=bench-{i}"},
        }
        for i in range(min(n, BATCH))
    ]
    sizes = [BATCH] * (n // BATCH) + ([n % BATCH] if n % BATCH else [])
    cpu_before = d.cpu_s()
    with d.client() as client:
        started = time.perf_counter()
        batches = []
        for size in sizes:
            r = client.post("/function-calls/batch", json={"calls": calls[:size]})
            r.raise_for_status()
            batches.append(r.json()["batch_id"])
        submitted = time.perf_counter()
        counts: dict[str, int] = {}
        deadline = time.monotonic() + max(600, n / 2)
        pending = list(batches)
        last_report = time.monotonic()
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{d.kind}: batches {pending} not done in time")
            status = client.get(f"/batches/{pending[0]}").json()
            if status["done"]:
                pending.pop(0)
                for name, count in status["counts"].items():
                    counts[name] = counts.get(name, 0) + count
                continue
            if time.monotonic() - last_report > 10:
                say(f"{d.kind}: batch {len(batches) - len(pending) + 1}: {status['counts']}")
                last_report = time.monotonic()
            time.sleep(0.1)
        ended = time.perf_counter()
    cpu_after = d.cpu_s()
    return {
        "calls": n,
        "seconds": round(ended - started, 2),
        "submit_seconds": round(submitted - started, 2),
        "calls_per_s": round(n / (ended - started), 1),
        "counts": counts,
        "cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0), 2) for k in cpu_after},
        "rss_mib_after": {k: round(rss_mib(pid), 1) for k, pid in d.redis_pids().items()},
    }


def idle_cpu(d: Dev, seconds: float = 10.0) -> dict[str, float]:
    """Share of one core the Redis uses while nothing is asked of passthru (the dev
    process's figure is all of it: fakeredis, if there, and the output of the others)."""
    time.sleep(3)  # let start-up settle
    before, started = d.cpu_s(), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = d.cpu_s(), time.perf_counter() - started
    return {k: round((after[k] - before.get(k, 0)) / elapsed * 100, 1) for k in after}


def one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    say(f"passthru dev --redis {kind}")
    with dev(kind) as d:
        say(f"{kind}: banner after {d.started_s:.1f} s; CPU while idle, 10 s")
        idle = idle_cpu(d)
        say(f"{kind}: {args.waits} banner calls")
        waits = banner_calls(d, args.waits)
        say(f"{kind}: {args.calls} calls in batches of {BATCH}")
        bulk = throughput(d, args.calls)
    return {
        "banner_s": round(d.started_s, 1),
        "idle_cpu_pct": idle,
        "banner_calls": waits,
        "bulk": bulk,
    }


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for step in path:
            value = value[step]
        values.append(value)
    return float(statistics.median(values))


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        f"{'redis':<14}{'bulk calls/s':>14}{'banner call p50':>18}{'max':>10}{'start':>9}"
        f"{'idle CPU':>10}"
    ]
    for kind, runs in results.items():
        idle = max(_median(runs, "idle_cpu_pct", k) for k in runs[0]["idle_cpu_pct"])
        lines.append(
            f"{kind:<14}{_median(runs, 'bulk', 'calls_per_s'):>12.0f}/s"
            f"{_median(runs, 'banner_calls', 'ms', 'p50'):>15.0f} ms"
            f"{_median(runs, 'banner_calls', 'ms', 'max'):>7.0f} ms"
            f"{_median(runs, 'banner_s'):>7.1f} s"
            f"{idle:>8.1f} %"
        )
    real = _median(results["redis-server"], "bulk", "calls_per_s")
    fake = _median(results["fakeredis"], "bulk", "calls_per_s")
    lines.append(f"fakeredis runs bulk calls at {fake / real:.0%} of redis-server's rate")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.devredis", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000, help="calls in the bulk part")
    parser.add_argument("--waits", type=int, default=30, help="banner calls, one at a time")
    parser.add_argument("--runs", type=int, default=1, help="runs of each kind (median shown)")
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for i in range(args.runs):
        for kind in KINDS if i % 2 == 0 else reversed(KINDS):
            results[kind].append(one(kind, args))
    report = {
        **run_header(),
        "calls": args.calls,
        "waits": args.waits,
        "runs": args.runs,
        "results": results,
    }
    print(table(results))
    write_results("devredis", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
