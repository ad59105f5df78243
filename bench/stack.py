"""What a benchmark runs: Redis, a database, the stand-in upstream, the API, workers (the
processes through api/dev/harness.py, as the end-to-end tests start theirs)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from api.dev.embedded_redis import EmbeddedRedis, free_port, start_embedded_redis
from api.dev.harness import Proc, Processes, StackBase, environment, new_database
from models.crypto.secrets import generate_encryption_key
from models.db.engine import create_db_engine
from models.db.migrate import upgrade

BENCH_ORIGIN = "https://bench-upstream.invalid"
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def own_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) the process itself has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """`pid` and its live descendants (a worker's interactive lane process, started by any
    of its threads)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for child in children:
            try:
                out += descendants(int(child))
            except OSError:  # it ended meanwhile
                continue
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds a process and its live descendants have used so far."""
    total = own_cpu_s(pid)
    for each in descendants(pid)[1:]:
        try:
            total += own_cpu_s(each)
        except OSError:  # it ended meanwhile
            continue
    return total


def postgres_cpu_s() -> float:
    """CPU seconds every Postgres process of this machine has used so far, each counted
    once (a benchmark runs alone, so they are its own database's, and the server's
    background work for it)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().startswith("postgres"):
                total += own_cpu_s(int(entry.name))
        except OSError:  # it ended meanwhile
            continue
    return total


@dataclass
class Stack(StackBase):
    tmp: Path
    redis: EmbeddedRedis
    database_url: str
    engine: Engine
    upstream_url: str
    processes: Processes
    api_url: str = ""

    def start_api(self) -> Proc:
        self.api_url = self.processes.start_api("--no-access-log", "--log-level", "warning")
        return self.procs["api"]

    def start_worker(self, name: str = "worker", concurrency: int | None = None) -> Proc:
        extra = ["-c", str(concurrency)] if concurrency else []
        return self.processes.start_worker(name, "--without-heartbeat", *extra)

    def start_beat(self) -> Proc:
        return self.processes.start_beat()

    def stop(self, proc: Proc) -> None:
        self.processes.stop(proc.name)

    def redis_memory(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            return int(client.info("memory")["used_memory"])
        finally:
            client.close()


@contextmanager
def stack(
    db: str, upstream_delay_ms: int = 0, upstream: list[str] | None = None
) -> Iterator[Stack]:
    """A migrated database (`db`: "postgres", a new one on PG_URL's server, or "sqlite"),
    its own Redis and the stand-in upstream (bench.upstream, or the module and options of
    `upstream`); the API and workers are started by the scenario."""
    with ExitStack() as cleanup:  # undone in reverse: processes, Redis, engine, database
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="passthru-bench-")))
        server = PG_URL if db == "postgres" else None
        url = cleanup.enter_context(new_database(tmp, server, prefix="passthru_bench"))
        engine = create_db_engine(url, pool_size=5)
        cleanup.callback(engine.dispose)
        upgrade(engine)
        redis = start_embedded_redis()
        cleanup.callback(redis.stop)
        up_port = free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        env = environment(
            url,
            redis.url,
            generate_encryption_key(),
            PASSTHRU_ENV="production",
            PASSTHRU_UPSTREAM_OVERRIDES=json.dumps({BENCH_ORIGIN: upstream_url}),
            PASSTHRU_LOG_LEVEL="WARNING",  # no line per call while measuring
            # The per-tenant bounds stay on (their cost is measured), far above what the
            # benchmarks submit: a 200,000-call backlog from one tenant, as fast as it can.
            PASSTHRU_TENANT_SUBMIT_RATE="1000000/1/1000000",
            PASSTHRU_TENANT_MAX_OPEN_CALLS="10000000",
            PASSTHRU_METRICS_PORT="0",
            PASSTHRU_WORKER_METRICS_PORT="0",  # two workers on one machine: none served
        )
        processes = cleanup.enter_context(Processes(tmp, env))
        argv = upstream or ["bench.upstream", "--delay-ms", str(upstream_delay_ms)]
        processes.start_server(
            "upstream",
            [sys.executable, "-m", *argv, "--port", str(up_port)],
            f"{upstream_url}/_history" if upstream else f"{upstream_url}/ready",
        )
        yield Stack(tmp, redis, url, engine, upstream_url, processes)
