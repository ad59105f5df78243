"""The interactive lane in a process of its own beside each worker (worker/lane_process.py),
against a real worker, Redis, database and stand-in upstream: single calls run there and
batches in the worker; the lane's counts reach the worker's metrics; a lane killed with -9
is started again and the calls go on; a lane whose worker was killed ends by itself and
gives up its lease; and with PASSTHRU_LANE_PROCESS=false the worker runs them itself.

On Postgres too: the lane killed (its popped call published again by the sweeper) and the
lane giving up its lease; the other two are `once`, each saying why."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import Caller, OwnStack, Stack, new_caller, wait_until
from tests.e2e.upstream import Reply, Upstream

WAIT = {"Prefer": "wait=30"}


@pytest.fixture(scope="module")
def lanes(own_stack: OwnStack) -> Iterator[Stack]:
    with own_stack("lane-logs") as s:
        s.beat()
        yield s


@pytest.fixture
def owner(lanes: Stack) -> Iterator[Caller]:
    with new_caller(lanes, "lane") as c:
        c.connect("slack", "u-lane", {"access_token": "xoxb-lane"})
        yield c


def parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, not ")"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()[:60]


def claimed_by_pid(engine: Engine, call_id: str) -> int:
    with engine.connect() as conn:
        worker = conn.execute(
            text("SELECT claimed_by FROM function_call WHERE id = :id"), {"id": call_id}
        ).scalar_one()
    return int(worker.split(":")[-2])


def interactive(owner: Caller, path: str) -> dict[str, object]:
    r = owner.http.post(
        "/slack-passthrough-request",
        json={"method": "GET", "url": path},
        headers={"X-User-ID": "u-lane", **WAIT},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


# `once`: which process runs a call is the lanes' Redis lists and the worker's metrics; the
# lease and sweeper tests below run on Postgres.
@pytest.mark.once
def test_single_calls_run_in_the_lane_process_and_batches_in_the_worker(
    lanes: Stack, owner: Caller
) -> None:
    lanes.upstream.script("GET", "/api/lane.one", Reply(200, {"ok": True}))
    worker = lanes.procs["worker"].pid
    # A single call is run by a child of the worker, not by the worker itself
    call = interactive(owner, "lane.one")
    assert call["network_code"] == "200"
    lane = claimed_by_pid(lanes.engine, str(call["id"]))
    assert lane != worker
    assert parent_of(lane) == worker
    # while a batch's calls are run by the worker
    r = owner.http.post(
        "/function-calls/batch",
        json={
            "calls": [
                {
                    "function": "slack-passthrough-request",
                    "params": {"method": "GET", "url": "lane.one"},
                }
            ]
        },
        headers={"X-User-ID": "u-lane"},
    )
    assert r.status_code == 202, r.text
    [accepted] = r.json()["accepted"]
    owner.wait(accepted["id"])
    assert claimed_by_pid(lanes.engine, accepted["id"]) == worker

    # And the worker's metrics count the lane's calls with its own
    def finished() -> float:
        port = lanes.env["PASSTHRU_WORKER_METRICS_PORT"]
        body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        name = 'passthru_calls_finished_total{app="slack",status="completed"}'
        lines = [line for line in body.splitlines() if line.startswith(name + " ")]
        assert len(lines) <= 1, "one sample per name and labels"
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    wait_until(lambda: finished() >= 2, 30, "the lane's first calls counted")
    before = finished()
    for _ in range(3):
        interactive(owner, "lane.one")
    wait_until(lambda: finished() >= before + 3, 30, "the lane's calls counted")


def test_a_lane_killed_is_started_again_and_calls_go_on(lanes: Stack, owner: Caller) -> None:
    lanes.upstream.script("GET", "/api/lane.two", Reply(200, {"ok": True}))
    worker = lanes.procs["worker"].pid
    lane = claimed_by_pid(lanes.engine, str(interactive(owner, "lane.two")["id"]))
    os.kill(lane, signal.SIGKILL)
    # A call made while no lane runs waits on its list, and the next lane runs it (one
    # popped by the lane as it died is published again by the next sweep)
    call = interactive(owner, "lane.two")
    assert call["network_code"] == "200"
    again = claimed_by_pid(lanes.engine, str(call["id"]))
    assert again != lane
    assert parent_of(again) == worker
    assert "starting it again" in lanes.all_logs()


def test_a_lane_whose_worker_dies_ends_and_gives_up_its_lease(lanes: Stack, owner: Caller) -> None:
    lanes.upstream.script("GET", "/api/lane.three", Reply(200, {"ok": True}))
    lane = claimed_by_pid(lanes.engine, str(interactive(owner, "lane.three")["id"]))
    lanes.procs["worker"].kill()
    wait_until(lambda: not alive(lane), 30, "the orphaned lane to end")
    with lanes.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id FROM worker_process WHERE pid = :pid"), {"pid": lane}
        ).all()
    assert rows == []  # a clean stop: its lease was given up, nothing for the sweeper
    assert "its worker process is gone" in lanes.all_logs()


# `once`: a setting that picks which process runs a call; nothing in it depends on the database.
@pytest.mark.once
def test_without_a_lane_process_the_worker_runs_single_calls_itself(
    own_stack: OwnStack, upstream: Upstream
) -> None:
    upstream.script("GET", "/api/lane.four", Reply(200, {"ok": True}))
    with own_stack("no-lane-logs", {"PASSTHRU_LANE_PROCESS": "false"}) as s:
        with new_caller(s, "nolane") as c:
            c.connect("slack", "u-lane", {"access_token": "xoxb-lane"})
            call = interactive(c, "lane.four")
        assert claimed_by_pid(s.engine, str(call["id"])) == s.procs["worker"].pid
