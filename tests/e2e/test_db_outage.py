"""A Postgres outage under load: nothing accepted is lost, and every submission is answered
202 (200 when it asked to wait and its call ended) or 503 with Retry-After.

The stack (the API, two workers and beat) reaches Postgres through a TCP proxy
(tests/e2e/tcp_proxy.py) that the test cuts for OUTAGE_S while its clients keep submitting:
every connection is reset and new ones are refused, as when the server crashes or restarts.
The machine's Postgres itself is never touched, and the test reads the database past the
proxy. Postgres only: on SQLite the database is a file, and there is no server to lose.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from api.dev.harness import new_database
from models.db.engine import create_db_engine
from models.db.migrate import upgrade
from tests.e2e.conftest import Stack, new_caller, running_stack, wait_until
from tests.e2e.tcp_proxy import TcpProxy
from tests.e2e.upstream import Reply, Upstream

# A module's stack starts with its first test, whose waits are long already.
pytestmark = pytest.mark.timeout(400)

OUTAGE_S = 8.0  # how long Postgres is away
FINAL = ("completed", "failed", "cancelled")
OUTAGE_ENV = {
    # Calls the outage leaves behind come back through the sweeper: a message taken while
    # the claim could not be written (republished PASSTHRU_REPUBLISH_AFTER_S after it was
    # published), a call sent whose result could not be stored (its lease expires). Short
    # values keep the test short.
    "PASSTHRU_SWEEP_EVERY_S": "1",
    "PASSTHRU_REPUBLISH_AFTER_S": "5",
    "PASSTHRU_LEASE_S": "6",
    # The lease must outlast every exchange.
    "PASSTHRU_MAX_TIMEOUT_S": "5",
    "PASSTHRU_CONNECT_TIMEOUT_S": "5",
    "PASSTHRU_READ_TIMEOUT_S": "5",
    "PASSTHRU_TIMEOUT_S": "5",
    # The machine's Postgres is shared and allows 100 connections: three processes of up
    # to 2 x 4 each, and 8 threads per worker to use them.
    "PASSTHRU_DB_POOL_SIZE": "4",
    "PASSTHRU_WORKER_CONCURRENCY": "8",
}
READ, WRITE = "/api/pgout.read", "/api/pgout.write"  # the stand-in's endpoints of this test
PACE_S = 0.05  # between one client's submissions
BATCH_PACE_S = 0.5
BATCH_SIZE = 20  # 16 GETs and 4 POSTs
ENOUGH_BEFORE = 150  # calls accepted before the cut
ENOUGH_AFTER = 150  # calls accepted after it
UPSTREAM_S = 1.0  # how long the stand-in takes to answer


def _postgres_server() -> str:
    server = os.environ.get("TEST_DATABASE_URL", "")
    if not server.startswith(("postgres://", "postgresql")):
        pytest.skip("Postgres only (set TEST_DATABASE_URL): a file has no outage")
    return server


@pytest.fixture(scope="module")
def outage_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    """A database of this module's own, migrated, and an engine on it that skips the proxy."""
    with new_database(tmp_path_factory.mktemp("outage-db"), _postgres_server()) as url:
        engine = create_db_engine(url, pool_size=2)
        upgrade(engine)
        try:
            yield url, engine
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def proxy(outage_db: tuple[str, Engine]) -> Iterator[TcpProxy]:
    target = make_url(outage_db[0])
    server = TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outage_stack(
    outage_db: tuple[str, Engine],
    proxy: TcpProxy,
    encryption_key: str,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Two workers and beat, every process on the database through `proxy`."""
    url, engine = outage_db
    proxied = make_url(url).set(host="127.0.0.1", port=proxy.port)
    logs = tmp_path_factory.mktemp("outage-logs")
    with running_stack(
        proxied.render_as_string(hide_password=False),
        engine,
        encryption_key,
        upstream,
        logs,
        OUTAGE_ENV,
    ) as s:
        s.worker("worker2")
        s.beat()
        yield s


@dataclass
class Answer:
    """One submission and what it got: a status, or no answer at all (`failure`)."""

    kind: str
    tags: list[str]  # the calls submitted, by the tag each carries to the upstream
    sent_at: float
    answered_at: float = 0.0
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    failure: str | None = None

    def accepted(self) -> dict[str, str]:
        """tag -> id of each call this answer accepted."""
        if self.status not in (200, 202):
            return {}
        if self.kind == "batch":
            return {self.tags[a["index"]]: a["id"] for a in self.body["accepted"]}
        return {self.tags[0]: self.body["id"]}


@dataclass
class Load:
    """Clients submitting calls on threads of their own until `stop`: single GETs (one in
    four waiting for its result), single POSTs without a key, POSTs with an
    Idempotency-Key (sent again with the same key after a 503, as Retry-After says) and
    batches."""

    http: Callable[[], httpx.Client]
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for client in (self._gets, self._posts, self._keyed_posts, self._batches):
            thread = threading.Thread(target=self._run, args=(client,), name=client.__name__)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def accepted_calls(self, since: float = 0.0) -> int:
        with self.lock:
            return sum(len(a.accepted()) for a in self.answers if a.sent_at >= since)

    def first_accepted(self, since: float) -> float:
        """When the first submission sent at `since` or later was answered 2xx."""
        with self.lock:
            return min(a.answered_at for a in self.answers if a.sent_at >= since and a.accepted())

    def _run(self, client: Callable[[httpx.Client], None]) -> None:
        with self.http() as http:
            client(http)

    def _submit(
        self, http: httpx.Client, kind: str, tags: list[str], path: str, **kw: Any
    ) -> Answer:
        answer = Answer(kind, tags, time.monotonic())
        try:
            r = http.post(path, **kw)
            answer.status, answer.headers = r.status_code, dict(r.headers)
            answer.body = r.json()
        except Exception as exc:
            answer.failure = f"{type(exc).__name__}: {exc}"
        answer.answered_at = time.monotonic()
        with self.lock:
            self.answers.append(answer)
        return answer

    def _gets(self, http: httpx.Client) -> None:
        n = 0
        while not self.stop.is_set():
            tag, n = f"g{n}", n + 1
            waits = n % 4 == 0
            self._submit(
                http,
                "get-wait" if waits else "get",
                [tag],
                "/slack-passthrough-request",
                json={"method": "GET", "url": f"pgout.read?tag={tag}"},
                headers={"Prefer": "wait=3"} if waits else {},
            )
            self.stop.wait(PACE_S)

    def _posts(self, http: httpx.Client) -> None:
        n = 0
        while not self.stop.is_set():
            tag, n = f"p{n}", n + 1
            body = {"method": "POST", "url": "pgout.write", "body": {"tag": tag}}
            self._submit(http, "post", [tag], "/slack-passthrough-request", json=body)
            self.stop.wait(PACE_S)

    def _keyed_posts(self, http: httpx.Client) -> None:
        n = 0
        while not self.stop.is_set():
            tag, n = f"k{n}", n + 1
            body = {"method": "POST", "url": "pgout.write", "body": {"tag": tag}}
            while not self.stop.is_set():
                answer = self._submit(
                    http,
                    "post-key",
                    [tag],
                    "/slack-passthrough-request",
                    json=body,
                    headers={"Idempotency-Key": tag},
                )
                if answer.status != 503:
                    break
                self.stop.wait(float(answer.headers.get("retry-after", "1")))
            self.stop.wait(PACE_S)

    def _batches(self, http: httpx.Client) -> None:
        n = 0
        while not self.stop.is_set():
            tags, calls = [], []
            for i in range(BATCH_SIZE):
                tag = f"b{n}-{i}"
                tags.append(tag)
                params: dict[str, Any] = (
                    {"method": "POST", "url": "pgout.write", "body": {"tag": tag}}
                    if i % 5 == 4
                    else {"method": "GET", "url": f"pgout.read?tag={tag}"}
                )
                calls.append({"function": "slack-passthrough-request", "params": params})
            n += 1
            self._submit(http, "batch", tags, "/function-calls/batch", json={"calls": calls})
            self.stop.wait(BATCH_PACE_S)


def calls_of(engine: Engine, tenant_id: str) -> dict[str, Any]:
    """The tenant's calls by id, read past the proxy."""
    query = text(
        "SELECT id, status, error, method, url, request_body, attempt_count FROM function_call "
        "WHERE tenant_id = :tenant_id"
    )
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(query, {"tenant_id": tenant_id})}


def sent_tags(upstream: Upstream) -> Counter[str]:
    """How many times the upstream received each tag (a retry sends its call again)."""
    reads = [s.query["tag"][0] for s in upstream.requests_to(READ)]
    writes = [s.json()["tag"] for s in upstream.requests_to(WRITE)]
    return Counter(reads + writes)


def tag_of(call: Any) -> str:
    """The tag a call carries to the upstream, from its row."""
    if call.method == "GET":
        return str(parse_qs(urlsplit(call.url).query)["tag"][0])
    return str(call.request_body["tag"])


def assert_unavailable(answer: Answer) -> None:
    """The documented 503: Retry-After in whole seconds and the error shape."""
    assert answer.headers.get("retry-after", "").isdigit(), answer
    assert int(answer.headers["retry-after"]) >= 1, answer
    assert set(answer.body) == {"error", "error_details"}, answer
    assert answer.body["error"] == "unavailable", answer
    assert answer.body["error_details"], answer
    for detail in answer.body["error_details"]:
        assert set(detail) == {"field", "message"}, answer


def test_postgres_outage_under_load_loses_no_accepted_call(
    outage_stack: Stack, proxy: TcpProxy
) -> None:
    stack = outage_stack
    # Given a Slack account, an upstream that answers 200 after UPSTREAM_S, and clients
    # submitting calls faster than the workers run them: when the database goes, calls are
    # on the wire and others wait in Redis
    stack.upstream.script("GET", READ, Reply(200, {"ok": True}, delay_s=UPSTREAM_S))
    stack.upstream.script("POST", WRITE, Reply(200, {"ok": True}, delay_s=UPSTREAM_S))
    with new_caller(stack, "pgout") as owner:
        tenant_id = owner.tenant_id
        owner.connect("slack", "u-pgout", {"access_token": "xoxb-pgout"})
        load = Load(lambda: stack.client(owner.api_key, "u-pgout"))
        load.start()
        try:
            wait_until(lambda: load.accepted_calls() >= ENOUGH_BEFORE, 60, "calls before")

            # When Postgres goes away for OUTAGE_S while the clients keep submitting
            cutting_at = time.monotonic()
            proxy.cut()
            cut_at = time.monotonic()
            time.sleep(OUTAGE_S)
            restoring_at = time.monotonic()
            proxy.restore()
            restored_at = time.monotonic()

            # ... and the clients go on until calls are accepted again
            wait_until(
                lambda: load.accepted_calls(since=restored_at) >= ENOUGH_AFTER,
                60,
                "calls accepted after the outage",
            )
            first_after = load.first_accepted(since=restored_at)
        finally:
            load.finish()

    # Then every submission was answered, 202 or 200 or 503, never a 500 or a dropped
    # connection
    answers = load.answers
    assert [a for a in answers if a.failure is not None] == []
    assert {a.status for a in answers} <= {200, 202, 503}, Counter(a.status for a in answers)
    # each 503 with Retry-After and the error shape
    refused = [a for a in answers if a.status == 503]
    for answer in refused:
        assert_unavailable(answer)
    # in order: accepted until the cut, refused while the database was away (some were),
    # accepted again after it
    before = [a for a in answers if a.answered_at < cutting_at]
    assert {a.status for a in before} <= {200, 202}, Counter(a.status for a in before)
    away = [a for a in answers if cut_at <= a.sent_at and a.answered_at < restoring_at]
    assert away
    assert {a.status for a in away} == {503}, Counter(a.status for a in away)
    # a batch was accepted whole, or not at all
    assert all(a.body["rejected"] == [] for a in answers if a.kind == "batch" and a.accepted())

    # and every accepted call is in the database; every call there ends, including those
    # written for a submission answered 503: a COMMIT whose answer the reset cut off (a
    # `Prefer: wait` submission whose call was written before the database went away
    # during its wait is answered 202; the report below lists what is left)
    accepted: dict[str, str] = {}
    for answer in answers:
        accepted.update(answer.accepted())
    kinds = {tag: a.kind for a in answers for tag in a.tags}
    assert set(accepted.values()) <= set(calls_of(stack.engine, tenant_id))
    wait_until(
        lambda: all(c.status in FINAL for c in calls_of(stack.engine, tenant_id).values()),
        90,
        "every call to end",
    )
    settled_at = time.monotonic()
    calls = calls_of(stack.engine, tenant_id)
    sent = sent_tags(stack.upstream)
    report(load, calls, accepted, sent, proxy, (cut_at, restoring_at, first_after, settled_at))

    # GETs and POSTs with a key complete; a POST without one completes, or fails as
    # outcome_unknown when the outage hid whether it was sent
    for tag, call_id in accepted.items():
        call = calls[call_id]
        if call.method == "POST" and kinds[tag] != "post-key":
            assert (call.status, call.error) in (("completed", None), ("failed", "outcome_unknown"))
        else:
            assert (call.status, call.error) == ("completed", None), (tag, call)
        # the upstream saw each completed call, and each attempt sent it at most once (a
        # POST with a key may be sent again when its result was lost: the key makes it safe
        # to, docs/architecture.md)
        assert sent[tag] >= (1 if call.status == "completed" else 0), (tag, call)
        assert sent[tag] <= call.attempt_count, (tag, call, sent[tag])
    # no POST without a key reached the upstream twice, accepted or not
    writes = Counter(s.json()["tag"] for s in stack.upstream.requests_to(WRITE))
    assert {t: n for t, n in writes.items() if n > 1 and not t.startswith("k")} == {}
    # and nothing reached the upstream that no client submitted
    assert set(sent) <= set(kinds)


def report(
    load: Load,
    calls: dict[str, Any],
    accepted: dict[str, str],
    sent: Counter[str],
    proxy: TcpProxy,
    times: tuple[float, float, float, float],
) -> None:
    """What the outage did, for the test's output (`pytest -s`)."""
    cut_at, restored_at, first_after, settled_at = times
    answers = Counter(
        (a.kind, a.status) for a in load.answers if cut_at <= a.answered_at < restored_at
    )
    ids = set(accepted.values())
    outcomes = Counter((c.method, c.status, c.error) for i, c in calls.items() if i in ids)
    kinds = {tag: a.kind for a in load.answers for tag in a.tags}
    written_anyway = {i: kinds[tag_of(c)] for i, c in calls.items() if i not in ids}
    print(
        f"\n{len(load.answers)} submissions of {sum(len(a.tags) for a in load.answers)} calls: "
        f"{dict(Counter(a.status for a in load.answers))}; during the outage "
        f"{dict(sorted(answers.items(), key=str))}\n"
        f"{len(ids)} calls accepted: {dict(outcomes)}; written though answered 503: "
        f"{written_anyway}\n"
        f"{proxy.reset} connections reset; first call accepted "
        f"{first_after - restored_at:.1f} s after the restore, every call final after "
        f"{settled_at - restored_at:.1f} s\n"
        f"sent more than once: "
        f"{dict(Counter(t[0] for t, n in sent.items() if n > 1))} (g: GET, k: keyed POST, "
        "b: in a batch)"
    )
