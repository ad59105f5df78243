"""A throwaway Redis for `passthru dev` and the tests: `redis-server` from PATH in a temp
dir if there is one, else fakeredis' TCP server in this process.

fakeredis is the fallback for trying passthru on a machine without Redis, not for load
(docs/performance.md measures what it costs). It runs Lua scripts only with `lupa` (the
`fakeredis[lua]` extra); passthru's rate limiter and Celery's locks need them, so a
fakeredis that cannot is refused at start rather than left to break the worker.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis

from models.errors import ConfigError

RedisKind = Literal["auto", "redis-server", "fakeredis"]  # what `passthru dev --redis` takes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedRedis:
    url: str
    port: int
    kind: Literal["redis-server", "fakeredis"]
    _process: subprocess.Popen[bytes] | None = None
    _server: object | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The redis-server's process id (None for fakeredis, which runs in this process)."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Stop the server; its data is gone (nothing is persisted)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._server = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def restart(self) -> None:
        """Stop and start again on the same port, empty (like a restart without persistence)."""
        self.stop()
        fresh = start_embedded_redis(self.port, kind=self.kind)
        self._process, self._server, self._dir = fresh._process, fresh._server, fresh._dir


def start_embedded_redis(port: int | None = None, kind: RedisKind = "auto") -> EmbeddedRedis:
    """Start a Redis on `port` (a free one if None): `redis-server` from PATH, fakeredis, or
    for "auto" the first when there is one, else the second."""
    port = port or free_port()
    url = f"redis://127.0.0.1:{port}/0"
    binary = shutil.which("redis-server")
    if kind == "redis-server" and binary is None:
        raise ConfigError(
            "redis-server is not on PATH (install it: `apt install redis-server`, "
            "`brew install redis`), or use --redis fakeredis to try passthru without it"
        )
    if binary and kind != "fakeredis":
        workdir = tempfile.TemporaryDirectory(prefix="passthru-redis-")
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir.name,
                "--logfile",
                str(Path(workdir.name) / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Out of the terminal's process group: Ctrl-C reaches its owner, which stops it
            # after the processes that use it (else they log its going away as they stop).
            start_new_session=True,
        )
        server = EmbeddedRedis(url, port, "redis-server", _process=process, _dir=workdir)
    else:
        try:
            from fakeredis import TcpFakeServer
        except ImportError:
            raise ConfigError(
                "redis-server is not on PATH and fakeredis is not installed: install "
                "redis-server (apt install redis-server), or the dev extra "
                "(pip install -e '.[dev]', which make run does)"
            ) from None

        fake = TcpFakeServer(("127.0.0.1", port))
        threading.Thread(target=fake.serve_forever, name="fakeredis", daemon=True).start()
        server = EmbeddedRedis(url, port, "fakeredis", _server=fake)
    try:
        _wait_ready(server)
    except BaseException:  # not ready, refused, or Ctrl-C meanwhile: nothing left running
        server.stop()
        raise
    return server


def _wait_ready(server: EmbeddedRedis, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded Redis did not start on port {server.port}"
                    ) from exc
                time.sleep(0.05)
        _check_scripts(server, client)
    finally:
        client.close()


def _check_scripts(server: EmbeddedRedis, client: redis.Redis) -> None:
    """Refuse a server that cannot run Lua (fakeredis without `lupa`)."""
    try:
        client.eval("return 1", 0)
    except redis.ResponseError as exc:
        server.stop()
        raise ConfigError(
            f"the embedded Redis ({server.kind}) cannot run Lua scripts, which passthru's rate "
            "limiter and Celery's locks need: install `fakeredis[lua]` (reinstall passthru), "
            "or install redis-server (`apt install redis-server`, `brew install redis`)"
        ) from exc
