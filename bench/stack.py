"""Processes a benchmark runs: Redis, a database, the stand-in upstream, the API, workers."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from api.dev.embedded_redis import EmbeddedRedis, free_port, start_embedded_redis
from api.dev.processes import api_argv, beat_argv, wait_until_answers, worker_argv
from models.crypto.secrets import generate_encryption_key
from models.db.engine import create_db_engine, normalize_database_url
from models.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
BENCH_ORIGIN = "https://bench-upstream.invalid"
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout_s: float = 60) -> None:
    if not wait_until_answers(url, timeout_s, ok=lambda status: status < 500):
        raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Stack:
    tmp: Path
    redis: EmbeddedRedis
    database_url: str
    engine: Engine
    env: dict[str, str]
    upstream_url: str
    procs: list[Proc] = field(default_factory=list)
    api_url: str = ""

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env or self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    def start_api(self) -> Proc:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        proc = self.spawn("api", api_argv(port, "--no-access-log", "--log-level", "warning"))
        wait_http(f"{self.api_url}/healthz")
        return proc

    def start_worker(self, name: str = "worker", concurrency: int | None = None) -> Proc:
        argv = worker_argv(f"{name}@%h", "--without-heartbeat")
        if concurrency:
            argv += ["-c", str(concurrency)]
        proc = self.spawn(name, argv)
        deadline = time.monotonic() + 60
        while b"ready" not in self._log_bytes(proc) and time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {self._log_bytes(proc)[-2000:]!r}")
            time.sleep(0.1)
        return proc

    def start_beat(self) -> Proc:
        return self.spawn("beat", beat_argv(self.tmp / "beat-schedule", "WARNING"))

    def _log_bytes(self, proc: Proc) -> bytes:
        return proc.log.read_bytes() if proc.log.exists() else b""

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def redis_memory(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            return int(client.info("memory")["used_memory"])
        finally:
            client.close()


def _database(kind: str, tmp: Path) -> tuple[str, str | None]:
    """(url, name of a Postgres database to drop afterwards)."""
    if kind == "postgres":
        admin_url = make_url(normalize_database_url(PG_URL))
        name = f"passthru_bench_{secrets.token_hex(4)}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return admin_url.set(database=name).render_as_string(hide_password=False), name
    return f"sqlite:///{tmp / 'bench.db'}", None


def _drop(name: str) -> None:
    admin = create_engine(make_url(normalize_database_url(PG_URL)), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def stack(
    db: str, upstream_delay_ms: int = 0, upstream: list[str] | None = None
) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="passthru-bench-") as tmpdir:
        tmp = Path(tmpdir)
        redis = start_embedded_redis()
        url, pg_name = _database(db, tmp)
        engine = create_db_engine(url, pool_size=5)
        upgrade(engine)
        up_port = free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        env = {
            **os.environ,
            "PASSTHRU_ENV": "production",
            "DATABASE_URL": url,
            "REDIS_URL": redis.url,
            "PASSTHRU_ENCRYPTION_KEYS": generate_encryption_key(),
            "PASSTHRU_UPSTREAM_OVERRIDES": json.dumps({BENCH_ORIGIN: upstream_url}),
            "PYTHONUNBUFFERED": "1",
            "PASSTHRU_LOG_LEVEL": "WARNING",  # no line per call while measuring
            # The per-tenant bounds stay on (their cost is measured), far above what the
            # benchmarks submit: a 200,000-call backlog from one tenant, as fast as it can.
            "PASSTHRU_TENANT_SUBMIT_RATE": "1000000/1/1000000",
            "PASSTHRU_TENANT_MAX_OPEN_CALLS": "10000000",
            "PASSTHRU_METRICS_PORT": "0",
        }
        s = Stack(tmp, redis, url, engine, env, upstream_url)
        try:
            argv = upstream or ["bench.upstream", "--delay-ms", str(upstream_delay_ms)]
            s.spawn("upstream", [sys.executable, "-m", *argv, "--port", str(up_port)])
            wait_http(f"{upstream_url}/_history" if upstream else f"{upstream_url}/ready")
            yield s
        finally:
            for proc in reversed(s.procs):
                proc.stop()
            engine.dispose()
            redis.stop()
            if pg_name:
                _drop(pg_name)
