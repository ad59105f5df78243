"""Failover at the default settings: a worker process killed with -9 while it holds slow
calls and part of a large batch. Its heartbeat stops, and the other worker takes over what
it was running and what it had prefetched, long before the minutes-long backstops
(PASSTHRU_REPUBLISH_AFTER_S, Redis' visibility timeout) would. Asserts order and
completeness, never durations: how soon is measured in bench/ (failover)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, bindparam, text

from tests.e2e.conftest import Caller, OwnStack, Stack, new_caller, wait_until
from tests.e2e.upstream import Reply

# A module's stack starts with its first test, whose waits are long already.
pytestmark = pytest.mark.timeout(400)

FINAL = ("completed", "failed", "cancelled")
# Well below PASSTHRU_REPUBLISH_AFTER_S (300 s): calls a dead worker had prefetched can
# only end in time if its death is noticed from its lease.
ALL_END_WITHIN_S = 150


@pytest.fixture(scope="module")
def pair(own_stack: OwnStack) -> Iterator[Stack]:
    """Two workers and beat, every timing setting at its default."""
    with own_stack("failover-logs") as s:
        s.worker("worker-2")
        s.beat()
        yield s


@pytest.fixture
def owner(pair: Stack) -> Iterator[Caller]:
    with new_caller(pair, "fo") as c:
        yield c


def rows(engine: Engine, ids: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT id, status, error, claimed_by FROM function_call WHERE id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": ids},
        )
        return {r.id: (r.status, r.error, r.claimed_by) for r in found}


def lost_attempts(engine: Engine, ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT call_id FROM call_attempt WHERE error = 'worker_lost' AND call_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": ids},
        )
        return {r.call_id for r in found}


def submit(owner: Caller, method: str, url: str, n: int, keyed: bool = False) -> list[str]:
    ids = []
    for i in range(n):
        body = {"method": method, "url": url, **({"body": {"i": i}} if method == "POST" else {})}
        headers = {"X-User-ID": "u-fo", **({"Idempotency-Key": f"{url}-{i}"} if keyed else {})}
        r = owner.http.post("/slack-passthrough-request", json=body, headers=headers)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def batch(owner: Caller, url: str, n: int, app: str = "slack") -> list[str]:
    calls = [
        {
            "function": f"{app}-passthrough-request",
            "params": {"method": "GET", "url": f"{url}?i={i}"},
        }
        for i in range(n)
    ]
    r = owner.http.post(
        "/function-calls/batch", json={"calls": calls}, headers={"X-User-ID": "u-fo"}
    )
    assert r.status_code == 202, r.text
    return [a["id"] for a in r.json()["accepted"]]


def test_a_killed_worker_s_calls_move_to_the_other_and_all_end(pair: Stack, owner: Caller) -> None:
    # Given slow calls (GETs, POSTs with and without an Idempotency-Key) and a 1,000-call
    # batch in flight on two workers
    up = pair.upstream
    up.script("GET", "/api/fo.slow", Reply(200, {"ok": 1}, delay_s=3))
    up.script("POST", "/api/fo.post", Reply(200, {"ok": 1}, delay_s=3))
    up.script("POST", "/api/fo.keyed", Reply(200, {"ok": 1}, delay_s=3))
    up.script("GET", "/api/fo.bulk", Reply(200, {"ok": 1}, delay_s=0.2))
    owner.connect("slack", "u-fo", {"access_token": "xoxb-failover"})
    bulk = batch(owner, "fo.bulk", 1000)
    # and 100 calls to an app limited to 10 a second: most wait for their slots in
    # countdown messages the workers hold
    up.script("GET", "/tenps/fo", Reply(200, {"ok": 1}))
    owner.connect("tenps", "u-fo", {"api_key": "k-failover"})
    limited = batch(owner, "fo", 100, app="tenps")
    gets = submit(owner, "GET", "fo.slow", 20)
    posts = submit(owner, "POST", "fo.post", 10)
    keyed = submit(owner, "POST", "fo.keyed", 10, keyed=True)
    everything = bulk + limited + gets + posts + keyed

    def held_by() -> dict[str, list[str]]:
        running: dict[str, list[str]] = {}
        for call_id, (status, _, worker) in rows(pair.engine, everything).items():
            if status == "running" and worker:
                running.setdefault(worker, []).append(call_id)
        return running

    # When the worker running the most slow calls is killed with -9 while it holds them
    slow = set(gets + posts + keyed)
    wait_until(
        lambda: any(len(slow & set(ids)) >= 5 for ids in held_by().values()), 60, "slow calls"
    )
    victim_id, _ = max(held_by().items(), key=lambda kv: len(slow & set(kv[1])))
    victim_pid = int(victim_id.split(":")[-2])
    victim = next((n for n, p in pair.procs.items() if p.pid == victim_pid), None)
    if victim is None:  # single calls run in a worker's interactive lane process
        os.kill(victim_pid, signal.SIGKILL)
    else:
        pair.procs[victim].kill()
    # (read after the kill: what the dead process was running when it died)
    victim_calls = held_by().get(victim_id, [])
    assert victim_calls
    unfinished = [i for i, (s, _, _) in rows(pair.engine, everything).items() if s not in FINAL]

    # Then every call ends, long before the backstops meant for other things would act
    wait_until(
        lambda: all(s in FINAL for s, _, _ in rows(pair.engine, everything).values()),
        ALL_END_WITHIN_S,
        "every call to end",
    )
    final = rows(pair.engine, everything)
    # every GET completed (none lost), most of the batch on the surviving worker
    assert {final[i][0] for i in bulk + limited + gets} == {"completed"}
    survivor_ids = {w for _, _, w in final.values()} - {victim_id}
    assert all(final[i][2] in survivor_ids for i in unfinished if final[i][0] == "completed"), (
        "a call unfinished at the kill completed on the dead worker"
    )
    # the calls the dead worker was running record that it was lost, and moved on
    assert lost_attempts(pair.engine, victim_calls) == set(victim_calls)
    # no POST without a key reached the upstream twice; those it may have received end
    # outcome_unknown; keyed POSTs are sent again and complete
    assert all(final[i][:2] in (("completed", None), ("failed", "outcome_unknown")) for i in posts)
    sent = [s.json()["i"] for s in up.requests_to("/api/fo.post")]
    assert len(sent) == len(set(sent)), "a POST without an Idempotency-Key was sent twice"
    assert {final[i][0] for i in keyed} == {"completed"}
    # and every GET of the batch reached the upstream
    seen = {r.query["i"][0] for r in up.requests_to("/api/fo.bulk")}
    assert len(seen) == 1000
    assert len({r.query["i"][0] for r in up.requests_to("/tenps/fo")}) == 100
