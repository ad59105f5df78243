"""The design's floor, a baseline of (c) and (e): the round trips a waiting call must make
in passthru's design, made by the least code that makes them, on the same Redis, Postgres,
stand-in upstream and client (bench/interactive.py starts it beside passthru).

- `python -m bench.floor api`: a bare ASGI callable under uvicorn. For each call it
  INSERTs the row (the columns a submission writes, into a table with every index of
  `function_call`) on an async psycopg connection in its event loop, RPUSHes the id, waits
  for the notice and answers its bytes.
- `python -m bench.floor lane`: threads that BLMOVE an id onto a held list, claim the row
  (`UPDATE ... RETURNING`), send the request with a blocking httpx client, store the result
  (`UPDATE`), PUBLISH the notice and LREM the id.

That is the design's order: the row durable before the id is published, the claim before
the exchange, the result durable before the notice. Nothing else: no authentication, no
validation, no tenant bounds, no account or credentials, no egress policy, no scrubbing,
no retries, no limiter, no SQLAlchemy, no webhook event, no log line. It is not a service;
it shows how much of a waiting call's added latency the design's round trips and processes
cost on this machine before any of passthru's own work. Postgres only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg
import redis
import redis.asyncio as aredis

TABLE = "bench_floor_call"
LIST_DUE = "bench-floor:due"
CHANNEL = "bench-floor:result"
CONNECTIONS = 8  # the API's connections, taken in turn
LANE_THREADS = 4  # per lane process

CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (LIKE function_call INCLUDING DEFAULTS INCLUDING INDEXES)"
)
_COLUMNS = (
    "id, tenant_id, app, function, user_id, connected_account_id, method, url, "
    "request_headers, status, output_truncated, attempt_count, created_at, published_at"
)
INSERT = (
    f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (%s, 'floor', 'bench', "
    "'bench-passthrough-request', 'floor-user', 'floor-account', %s, %s, '{}', 'queued', "
    "false, 0, %s, %s)"
)
CLAIM = (
    f"UPDATE {TABLE} SET status = 'running', started_at = %s, "
    "attempt_count = attempt_count + 1 WHERE id = %s AND status = 'queued' "
    "RETURNING method, url, attempt_count"
)
STORE = (
    f"UPDATE {TABLE} SET status = 'completed', network_code = %s, output = %s, "
    "response_headers = %s, finished_at = %s WHERE id = %s AND status = 'running' "
    "AND attempt_count = %s"
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as passthru stores it


# ---- the API's side ---------------------------------------------------------------------


class FloorApi:
    """The ASGI callable: POST any path with `{"method", "url"}` and wait for the result."""

    def __init__(self, dsn: str, redis_url: str) -> None:
        self._dsn = dsn
        self._redis_url = redis_url
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._connections: asyncio.Queue[Any] = asyncio.Queue()
        self._redis: Any = None  # made at start-up, in the server's event loop
        self._reader: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = await _body(receive)
        if scope["path"] == "/ready":
            await _answer(send, 200, b"ready")
            return
        status, answer = await self._call(body)
        await _answer(send, status, answer)

    async def _call(self, body: bytes) -> tuple[int, bytes]:
        request = orjson.loads(body)
        call_id = "fc_" + secrets.token_hex(12)
        result = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = result
        now = _now()
        conn = await self._connections.get()
        try:
            await conn.execute(INSERT, (call_id, request["method"], request["url"], now, now))
        finally:
            self._connections.put_nowait(conn)
        await self._redis.rpush(LIST_DUE, call_id)
        try:
            return 200, await asyncio.wait_for(result, 10)
        except TimeoutError:
            return 202, b"{}"
        finally:
            self._waiting.pop(call_id, None)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for _ in range(CONNECTIONS):
                    conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                    self._connections.put_nowait(conn)
                self._redis = aredis.Redis.from_url(self._redis_url)
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                self._reader = asyncio.create_task(self._notices(pubsub))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._reader is not None:
                    self._reader.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _notices(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            call_id, _, body = message["data"].partition(b" ")
            waiting = self._waiting.get(call_id.decode())
            if waiting is not None and not waiting.done():
                waiting.set_result(body)


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---- the lane's side --------------------------------------------------------------------


def lane(dsn: str, redis_url: str, upstream_url: str, threads: int) -> None:
    """`threads` threads taking calls, each with its own connections, until the process is
    stopped."""
    serving = []
    for i in range(threads):
        db = psycopg.connect(dsn, autocommit=True)
        r = redis.Redis.from_url(redis_url)
        held = f"bench-floor:held:{os.getpid()}:{i}"
        serve = threading.Thread(target=_serve, args=(db, r, upstream_url, held), daemon=True)
        serve.start()
        serving.append(serve)
    print("ready", flush=True)
    for serve in serving:
        serve.join()


def _serve(db: psycopg.Connection[Any], r: redis.Redis, upstream_url: str, held: str) -> None:
    client = httpx.Client(headers={"Authorization": "Bearer floor"})
    while True:
        popped = r.blmove(LIST_DUE, held, 1, "LEFT", "RIGHT")
        if popped is None:
            continue
        call_id = popped.decode()
        row = db.execute(CLAIM, (_now(), call_id)).fetchone()
        if row is not None:
            method, url, attempt = row
            # The call's path on the stand-in upstream, as passthru's override sends it.
            response = client.request(method, upstream_url + urlsplit(url).path)
            code = str(response.status_code)
            headers = orjson.dumps(dict(response.headers))
            db.execute(STORE, (code, response.content, headers, _now(), call_id, attempt))
            notice = orjson.dumps(
                {
                    "id": call_id,
                    "status": "completed",
                    "network_code": code,
                    "output": orjson.loads(response.content),
                    "headers": dict(response.headers),
                    "error": None,
                }
            )
            r.publish(CHANNEL, popped + b" " + notice)
        r.lrem(held, 1, popped)


def prepare(database_url: str) -> str:
    """Create the floor's table beside passthru's (every index of `function_call`); the
    psycopg DSN of `database_url`."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CREATE)
    return dsn


def argv_api(port: int, dsn: str, redis_url: str) -> list[str]:
    return [sys.executable, "-m", "bench.floor", "api", "--port", str(port), dsn, redis_url]


def argv_lane(dsn: str, redis_url: str, upstream_url: str) -> list[str]:
    return [sys.executable, "-m", "bench.floor", "lane", dsn, redis_url, "--upstream", upstream_url]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("role", choices=["api", "lane"])
    parser.add_argument("dsn")
    parser.add_argument("redis_url")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    if args.role == "lane":
        lane(args.dsn, args.redis_url, args.upstream, LANE_THREADS)
        return
    import uvicorn

    uvicorn.run(
        FloorApi(args.dsn, args.redis_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
