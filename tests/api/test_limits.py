"""Limits met before a body is read, routed or parsed: the body's size, NUL in the path and
the query, and authentication. The middleware is driven with hand-made ASGI messages, so the
tests see how much of a body it pulled; the HTTP tests go through the whole app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.types import Message, Receive, Scope, Send

from api.auth import unauthorized
from api.limits import Authenticate, RequestLimits, nul_problem
from tests.api.conftest import Caller, Parse
from tests.api.test_errors import assert_error_shape

LIMIT = 1000
CALL: dict[str, Any] = {"method": "GET", "url": "conversations.list"}
BATCH_LIMIT = 4000


class Downstream:
    """The app behind the middleware: records the body it read."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class Client:
    """Sends a body in chunks and counts how many the middleware pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self.total = len(chunks)
        self.pulled = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        chunk = next(self._chunks, None)
        if chunk is None:
            return {"type": "http.disconnect"}
        self.pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": self.pulled < self.total}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def scope(
    path: str = "/slack-passthrough-request",
    headers: dict[str, str] | None = None,
    query: bytes = b"",
    method: str = "POST",
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


def run(s: Scope, client: Client, authenticate: Authenticate | None = None) -> Downstream:
    app = Downstream()
    limits = RequestLimits(
        app,
        max_request_bytes=LIMIT,
        max_batch_request_bytes=BATCH_LIMIT,
        authenticate=authenticate,
    )
    asyncio.run(limits(s, client.receive, client.send))
    return app


async def refuse_every_key(scope: Scope) -> None:
    raise unauthorized("this API key is not valid")


def assert_too_large(client: Client, limit: int, setting: str) -> None:
    assert client.status == 413
    assert client.headers["connection"] == "close"
    body = client.json
    assert_error_shape(body, "request_too_large")
    (detail,) = body["error_details"]
    assert detail["field"] == "body"
    assert str(limit) in detail["message"]
    assert setting in detail["message"]


def test_a_declared_length_over_the_limit_is_refused_without_reading() -> None:
    # Given a request declaring one byte more than the limit
    client = Client([b"x" * (LIMIT + 1)])
    # When it arrives
    app = run(scope(headers={"content-length": str(LIMIT + 1)}), client)
    # Then it is refused at once: not a byte read, the app never called
    assert client.pulled == 0
    assert not app.called
    assert_too_large(client, LIMIT, "PASSTHRU_MAX_REQUEST_BYTES")


def test_a_chunked_body_is_refused_the_moment_it_passes_the_limit() -> None:
    # Given a chunked body of 100 chunks of 100 bytes (10x the limit), no Content-Length
    client = Client([b"x" * 100] * 100)
    # When it arrives
    app = run(scope(headers={"transfer-encoding": "chunked"}), client)
    # Then the middleware stopped reading at the chunk that passed the limit
    assert client.pulled == LIMIT // 100 + 1
    assert not app.called
    assert_too_large(client, LIMIT, "PASSTHRU_MAX_REQUEST_BYTES")


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    chunks = [b"a" * 250, b"b" * 250, b"c" * 250, b"d" * 250]
    client = Client(chunks)
    app = run(scope(headers={"transfer-encoding": "chunked"}), client)
    assert client.status == 200
    assert app.body == b"".join(chunks)


def test_a_batch_may_be_larger_but_has_its_own_limit() -> None:
    # Given a batch of 3,000 bytes: over the request limit, within the batch limit
    ok = Client([b"x" * 3000])
    app = run(scope("/function-calls/batch", {"content-length": "3000"}), ok)
    assert ok.status == 200
    assert app.body == b"x" * 3000
    # And a batch over the batch limit
    over = Client([b"x" * 1000] * 5)
    run(scope("/function-calls/batch", {"transfer-encoding": "chunked"}), over)
    assert_too_large(over, BATCH_LIMIT, "PASSTHRU_MAX_BATCH_REQUEST_BYTES")
    # And the batch limit is only for POST /function-calls/batch
    elsewhere = Client([b"x" * 3000])
    run(scope("/function-calls", {"content-length": "3000"}), elsewhere)
    assert elsewhere.status == 413


def test_a_request_without_a_body_is_passed_through_untouched() -> None:
    client = Client([])
    app = run(scope(method="GET", path="/function-calls"), client)
    assert app.called
    assert client.status == 200


def test_a_client_that_leaves_mid_body_gets_no_answer() -> None:
    # Given a chunked body whose client disconnects before its end
    client = Client([b"x" * 10])
    client.total = 5  # it announces more chunks than it sends
    app = run(scope(headers={"transfer-encoding": "chunked"}), client)
    # Then nothing is sent and the app is not called
    assert client.sent == []
    assert not app.called


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/function-calls/fc_\x00", b"", "path"),
        ("/function-calls", b"user_id=a%00b", "user_id"),
        ("/function-calls", b"app=slack&status=queued&cursor=%00", "cursor"),
        ("/function-calls", b"a%00b=1", "query"),
    ],
)
def test_nul_in_the_path_or_the_query_is_a_400_naming_it(
    path: str, query: bytes, field: str
) -> None:
    # Given a request whose path or query holds a NUL
    client = Client([])
    # When it arrives
    app = run(scope(path, query=query, method="GET"), client)
    # Then it is refused before the app, naming where
    assert not app.called
    assert client.status == 400
    body = client.json
    assert_error_shape(body, "invalid_params")
    assert body["error_details"][0]["field"] == field
    assert "NUL" in body["error_details"][0]["message"]


def test_an_ordinary_query_has_no_nul_problem() -> None:
    assert nul_problem("/function-calls", b"user_id=a%20b&app=slack") is None
    assert nul_problem("/function-calls", b"") is None


@pytest.mark.parametrize(
    "headers",
    [{"content-length": "500"}, {"transfer-encoding": "chunked"}],
    ids=["declared", "chunked"],
)
def test_a_body_is_not_read_before_its_request_is_authenticated(headers: dict[str, str]) -> None:
    # Given a body of 5 chunks and an API key that is not valid
    client = Client([b"x" * 100] * 5)
    # When it is sent
    app = run(scope(headers=headers), client, refuse_every_key)
    # Then it is a 401 before a byte is read, and the connection is closed
    assert client.pulled == 0
    assert not app.called
    assert client.status == 401
    assert client.headers["connection"] == "close"
    assert client.headers["www-authenticate"] == "Bearer"
    assert_error_shape(client.json, "unauthorized")


def test_an_authenticated_body_is_read_after_the_check() -> None:
    order: list[str] = []
    client = Client([b"x" * 100] * 2)

    async def accept(s: Scope) -> None:
        order.append(f"checked after {client.pulled} chunks")

    app = run(scope(headers={"transfer-encoding": "chunked"}), client, accept)
    assert order == ["checked after 0 chunks"]
    assert app.body == b"x" * 200


@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", {}), ("GET", {"transfer-encoding": "chunked"}), ("DELETE", {"content-length": "5"})],
)
def test_a_request_whose_body_no_route_reads_is_left_to_its_route(
    method: str, headers: dict[str, str]
) -> None:
    client = Client([b"x" * 5])
    app = run(
        scope(method=method, path="/function-calls", headers=headers), client, refuse_every_key
    )
    assert app.called
    assert client.status == 200


# --- through the whole app ----------------------------------------------------------------


def test_an_oversized_body_is_a_413_before_authentication(caller: Caller) -> None:
    # Given a body one byte over 5 MiB and no API key at all
    body = b"x" * (5 * 1024 * 1024 + 1)
    # When posted
    response = caller.client.post(
        "/slack-passthrough-request", content=body, headers={"Content-Type": "application/json"}
    )
    # Then it is a 413 (not a 401), in the error shape, and the connection is closed
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert_error_shape(response.json(), "request_too_large")
    assert "PASSTHRU_MAX_REQUEST_BYTES" in response.json()["error_details"][0]["message"]


def test_a_nul_in_a_query_reaches_no_database(caller: Caller) -> None:
    response = caller.client.get("/function-calls?user_id=x%00y", headers=caller.headers())
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "user_id"


def test_a_body_without_a_valid_key_is_a_401_and_never_parsed(
    caller: Caller, watch_json_parser: Callable[[], list[Parse]]
) -> None:
    # Given a body just under the limit, and the JSON parser watched
    parsed = watch_json_parser()
    body = b"[" + b"0," * (2 * 1024 * 1024) + b"0]"
    for headers in ({}, {"Authorization": "Bearer pt_not-a-key"}, {"Authorization": "Basic x"}):
        # When it is posted without a valid key
        response = caller.client.post(
            "/slack-passthrough-request",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )
        # Then it is a 401 that closes the connection, and nothing was parsed
        assert response.status_code == 401, response.text
        assert response.headers["connection"] == "close"
        assert_error_shape(response.json(), "unauthorized")
    assert parsed == []
    # And with the key, the same route parses and answers
    caller.connect()
    ok = caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    assert ok.status_code == 202, ok.text
    assert parsed


@pytest.fixture
def tight_pool(make_app: Callable[..., FastAPI]) -> tuple[TestClient, Engine]:
    """The app with one database connection and one in overflow, waited for 0.2 s."""
    tight = make_app(db_pool_size=1, db_pool_timeout_s=0.2)
    return TestClient(tight), tight.state.engine


def test_a_request_that_gets_no_database_connection_is_a_503_to_retry(
    tight_pool: tuple[TestClient, Engine],
    caller: Caller,
    make_caller: Callable[[], Caller],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, engine = tight_pool
    monkeypatch.setattr("api.quotas.FAILURE_TTL_S", 0.0)  # a retry may count again at once
    # Given a tenant whose key the API already knows, and one it has not seen yet
    known, unknown = caller, make_caller()
    assert client.get("/function-calls", headers=known.headers()).status_code == 200
    # And every connection of the pool held
    held = [engine.connect(), engine.connect()]
    try:
        # When calls are submitted (the new key is looked up before its body is read; the
        # known tenant's open calls are counted) and a list is read (the route's own query)
        refused = [
            client.post("/slack-passthrough-request", json=CALL, headers=unknown.headers()),
            client.post("/slack-passthrough-request", json=CALL, headers=known.headers()),
            client.get("/function-calls", headers=known.headers()),
        ]
    finally:
        for conn in held:
            conn.close()
    # Then each is a 503 in the error shape, saying when to retry
    for response in refused:
        assert response.status_code == 503, response.text
        assert_error_shape(response.json(), "unavailable")
        assert response.json()["error_details"][0]["field"] == "database"
        assert int(response.headers["Retry-After"]) >= 1
    # And once connections are free, the same requests succeed
    caller.connect()
    ok = client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    assert ok.status_code == 202, ok.text


def test_a_body_on_a_route_that_reads_none_is_ignored_not_refused(caller: Caller) -> None:
    response = caller.client.request(
        "GET", "/healthz", content=iter([b"x" * 1000]), headers={"Transfer-Encoding": "chunked"}
    )
    assert response.status_code == 200
