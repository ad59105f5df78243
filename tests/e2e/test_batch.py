"""Bulk submission end to end: each item accepted or rejected alone, all accepted complete."""

from __future__ import annotations

import time

from tests.e2e.conftest import WAIT_S, Caller, Stack
from tests.e2e.test_errors import assert_error

GOOD = {
    "function": "slack-passthrough-request",
    "params": {"method": "GET", "url": "https://slack.com/api/conversations.list"},
}


def test_batch_accepts_valid_items_rejects_the_rest_and_completes(
    stack: Stack, caller: Caller
) -> None:
    # Given a Slack account and a batch of 300 calls, three of them invalid
    caller.connect("slack", "u-batch", {"access_token": "xoxb-batch"})
    calls = [
        {**GOOD, "params": {**GOOD["params"], "url": f"conversations.list?n={i}"}}
        for i in range(300)
    ]
    calls[7] = {**GOOD, "params": {"method": "GET", "url": "https://evil.example.com/"}}
    calls[150] = {"function": "nosuch-passthrough-request", "params": GOOD["params"]}
    calls[299] = {"function": "slack-passthrough-request"}  # no params
    before = len(stack.upstream.requests_to("/api/conversations.list"))

    # When it is submitted
    r = caller.http.post(
        "/function-calls/batch", json={"calls": calls}, headers={"X-User-ID": "u-batch"}
    )

    # Then each item is answered on its own
    assert r.status_code == 202, r.text
    body = r.json()
    assert [x["index"] for x in body["rejected"]] == [7, 150, 299]
    assert body["rejected"][0]["error"] == "invalid_params"
    assert body["rejected"][1]["error"] == "unknown_app"
    assert body["rejected"][2]["error_details"][0]["field"] == "params"
    assert len(body["accepted"]) == 297
    batch_id = body["batch_id"]

    # and every accepted call completes
    deadline = time.monotonic() + WAIT_S
    while True:
        progress = caller.http.get(f"/batches/{batch_id}").json()
        if progress["done"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert progress["done"], progress
    assert progress["counts"] == {"completed": 297}
    assert (progress["accepted"], progress["rejected"]) == (297, 3)
    seen = stack.upstream.requests_to("/api/conversations.list")[before:]
    assert sorted(int(s.query["n"][0]) for s in seen) == sorted(
        i for i in range(300) if i not in (7, 150, 299)
    )
    # and the log filters by batch, holding only the accepted calls
    ids: list[str] = []
    cursor = None
    while True:
        params = {"batch_id": batch_id, "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = caller.http.get("/function-calls", params=params).json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(ids) == sorted(a["id"] for a in body["accepted"])


def test_batch_limits_and_isolation(stack: Stack, caller: Caller) -> None:
    r = caller.http.post("/function-calls/batch", json={"calls": [GOOD] * 1001})
    assert_error(r, 400, "invalid_params", "calls")
    r = caller.http.post("/function-calls/batch", json={"calls": []})
    assert_error(r, 400, "invalid_params", "calls")
    assert_error(caller.http.get("/batches/bt_nope"), 404, "not_found")
