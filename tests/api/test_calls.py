"""Reading calls: one (`GET /function-calls/{id}`), the log (`GET /function-calls`, its
pages and filters), the export, and cancelling."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col

from models.calls.states import CallStatus
from models.db.engine import session_scope
from models.db.tables import FunctionCall
from tests.api.conftest import Caller, finish, log, submit
from tests.api.test_errors import assert_error_shape

# --- the log ------------------------------------------------------------------------------


def test_log_paginates_newest_first(caller: Caller) -> None:
    # Given five calls
    caller.connect()
    ids = [submit(caller).json()["id"] for _ in range(5)]
    # When the log is read two at a time
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = log(caller, "?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then every call is seen once, newest first
    assert pages == 3
    assert seen == list(reversed(ids))
    created = [c["created_at"] for c in log(caller)["items"]]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize(
    "cursor",
    [
        "fc_nope",
        "ca_01m8zpq7zed6xv50cadqxtqgjs",  # another kind of id
        "fc_01M8ZPQ7ZED6XV50CADQXTQGJS",  # upper case: no id has it
        "z" * 5000,
        "%27",
    ],
)
def test_a_cursor_the_log_never_gave_is_a_400_naming_it(caller: Caller, cursor: str) -> None:
    answer = caller.client.get(f"/function-calls?cursor={cursor}", headers=caller.headers())
    assert answer.status_code == 400
    assert answer.json()["error_details"][0]["field"] == "cursor"


def test_log_filters_by_app_status_and_user(caller: Caller) -> None:
    # Given calls for two apps and two users
    caller.connect(app="slack", user="alice")
    caller.connect(app="pipedrive", user="alice")
    caller.connect(app="slack", user="bob")
    slack_alice = submit(caller, user="alice").json()["id"]
    pipedrive_alice = submit(
        caller, {"method": "GET", "url": "v1/deals"}, app="pipedrive", user="alice"
    ).json()["id"]
    slack_bob = submit(caller, user="bob").json()["id"]
    cancelled = caller.client.post(f"/function-calls/{slack_bob}/cancel", headers=caller.headers())
    assert cancelled.status_code == 200

    def ids(query: str) -> set[str]:
        return {item["id"] for item in log(caller, query)["items"]}

    # Then each filter selects exactly its calls
    assert ids("") == {slack_alice, pipedrive_alice, slack_bob}
    assert ids("?app=slack") == {slack_alice, slack_bob}
    assert ids("?app=pipedrive") == {pipedrive_alice}
    assert ids("?user_id=alice") == {slack_alice, pipedrive_alice}
    assert ids("?user_id=bob") == {slack_bob}
    assert ids("?status=queued") == {slack_alice, pipedrive_alice}
    assert ids("?status=cancelled") == {slack_bob}
    assert ids("?app=slack&user_id=alice&status=queued") == {slack_alice}
    assert ids("?app=hubspot") == set()


def test_log_refuses_unknown_status(caller: Caller) -> None:
    response = caller.client.get("/function-calls?status=exploded", headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")


def test_log_filters_by_time(caller: Caller) -> None:
    caller.connect()
    call_id = submit(caller).json()["id"]
    assert log(caller, "?since=2999-01-01T00:00:00Z")["items"] == []
    assert [c["id"] for c in log(caller, "?until=2999-01-01T00:00:00")["items"]] == [call_id]
    assert [c["id"] for c in log(caller, "?since=2000-01-01T00:00:00Z")["items"]] == [call_id]
    assert log(caller, "?until=2000-01-01T00:00:00Z")["items"] == []
    # (the first and the last moments a caller can name are bounds like any other)
    assert [c["id"] for c in log(caller, "?since=0001-01-01T00:00:00Z")["items"]] == [call_id]
    assert [c["id"] for c in log(caller, "?until=9999-12-31T23:59:59Z")["items"]] == [call_id]
    assert log(caller, "?until=0001-01-01T00:05:00Z")["items"] == []
    assert log(caller, "?since=9999-12-31T23:59:59Z")["items"] == []
    # (and an offset is converted: this is 0001-01-01T00:00Z)
    assert [c["id"] for c in log(caller, "?since=0001-01-01T01:00:00%2B01:00")["items"]] == [
        call_id
    ]


@pytest.mark.parametrize("body", [5, 1.0, 18446744073709551615, "5"], ids=repr)
def test_a_call_whose_body_is_a_bare_number_reads_back_and_replays(
    caller: Caller, body: object
) -> None:
    # Given a call whose body is a JSON number (SQLite would store the text `5` as a number)
    caller.connect()
    call = {"method": "POST", "url": "chat.postMessage", "body": body}
    first = submit(caller, call, idempotency_key="k-number")
    assert first.status_code == 202, first.text
    # When it is read, listed and sent again under the same key / Then every answer is
    # whole, and the key finds the same call (its body fingerprinted as it was sent)
    call_id = first.json()["id"]
    assert (
        caller.client.get(f"/function-calls/{call_id}", headers=caller.headers()).status_code == 200
    )
    assert [c["id"] for c in log(caller)["items"]] == [call_id]
    again = submit(caller, call, idempotency_key="k-number")
    assert (again.status_code, again.json()["id"]) == (202, call_id)


@pytest.mark.parametrize("path", ["/function-calls", "/function-calls/export"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=0001-01-01T00:00:00%2B01:00", "since"),
        ("until=9999-12-31T23:59:59-01:00", "until"),
        ("since=0001-01-01T00:59:59%2B01:00", "since"),
    ],
)
def test_a_moment_outside_the_years_utc_can_hold_is_a_400(
    caller: Caller, path: str, query: str, field: str
) -> None:
    # A valid date and time whose offset moves it before year 1 or after 9999 in UTC
    response = caller.client.get(f"{path}?{query}", headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"] == field


def test_a_time_range_keeps_a_call_whose_id_is_a_little_older(
    caller: Caller, engine: Engine
) -> None:
    # Given a call written a minute after its id was made (a slow submission)
    caller.connect()
    call_id = submit(caller).json()["id"]
    written = datetime.now(UTC) + timedelta(minutes=1)
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall).where(col(FunctionCall.id) == call_id).values(created_at=written)
        )
    # Then a range that starts after its id's time but before it was written still has it
    since = (written - timedelta(seconds=1)).isoformat()
    assert [c["id"] for c in log(caller, f"?since={quote(since)}")["items"]] == [call_id]


def test_the_log_filters_on_the_upstream_status(caller: Caller, engine: Engine) -> None:
    caller.connect()
    codes = ["200", "429", "200", "404"]
    ids = [submit(caller).json()["id"] for _ in codes]
    for call_id, code in zip(ids, codes, strict=True):
        finish(engine, call_id, code)
    got = log(caller, "?network_code=200")["items"]
    assert sorted(c["id"] for c in got) == sorted([ids[0], ids[2]])
    bad = caller.client.get("/function-calls?network_code=abc", headers=caller.headers())
    assert bad.status_code == 400
    assert_error_shape(bad.json())


def test_the_export_streams_every_matching_call_as_ndjson(
    caller: Caller, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 7 calls, and export pages of 3 (so the stream spans pages)
    monkeypatch.setattr("api.call_export.EXPORT_BATCH", 3)
    caller.connect()
    ids = [submit(caller).json()["id"] for _ in range(7)]
    finish(engine, ids[0], "500")
    # When exported
    response = caller.client.get("/function-calls/export", headers=caller.headers())
    # Then every call is one JSON line, newest first
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [c["id"] for c in lines] == list(reversed(ids))
    # And the filters apply
    only = caller.client.get("/function-calls/export?network_code=500", headers=caller.headers())
    assert [json.loads(line)["id"] for line in only.text.splitlines()] == [ids[0]]


# --- one call, and cancelling -------------------------------------------------------------


def test_unknown_call_id_is_404(caller: Caller) -> None:
    response = caller.client.get("/function-calls/fc_doesnotexist", headers=caller.headers())
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_another_tenants_call_is_404(caller: Caller, make_caller: Callable[[], Caller]) -> None:
    # Given a call of one tenant
    caller.connect()
    call_id = submit(caller).json()["id"]
    other = make_caller()
    # When another tenant asks for it, or to cancel it / Then it does not exist for them
    got = other.client.get(f"/function-calls/{call_id}", headers=other.headers())
    assert got.status_code == 404
    assert_error_shape(got.json(), "not_found")
    cancel = other.client.post(f"/function-calls/{call_id}/cancel", headers=other.headers())
    assert cancel.status_code == 404
    assert log(other)["items"] == []
    # and the owner still sees it queued
    assert (
        caller.client.get(f"/function-calls/{call_id}", headers=caller.headers()).json()["status"]
        == "queued"
    )


def test_cancel_queued_call_then_again_is_409(caller: Caller) -> None:
    # Given a queued call
    caller.connect()
    call_id = submit(caller).json()["id"]
    # When it is cancelled
    first = caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    # Then it is cancelled and final
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["finished_at"] is not None
    # and cancelling again is a conflict
    again = caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    assert again.status_code == 409
    assert_error_shape(again.json(), "not_cancellable")
    got = caller.client.get(f"/function-calls/{call_id}", headers=caller.headers())
    assert got.json()["status"] == "cancelled"


def test_running_call_cannot_be_cancelled(caller: Caller, engine: Engine) -> None:
    # Given a call a worker has claimed
    caller.connect()
    call_id = submit(caller).json()["id"]
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == call_id)
            .values(status=CallStatus.RUNNING)
        )
    # When cancelled / Then it is a conflict and the call keeps running
    response = caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    assert response.status_code == 409
    assert_error_shape(response.json(), "not_cancellable")
    got = caller.client.get(f"/function-calls/{call_id}", headers=caller.headers())
    assert got.json()["status"] == "running"
