"""`Prefer: wait=N`, `Prefer: respond-async` and `?wait=N`: only finite waits from 0 to 60,
honoured up to PASSTHRU_MAX_WAIT_S."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from tests.api.conftest import Caller, submit
from tests.api.test_errors import assert_error_shape

SLACK = "/slack-passthrough-request"
CALL = {"method": "GET", "url": "conversations.list"}
BAD_WAITS = ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "61", "60.01", "abc", "1e3", ""]


def test_respond_async_answers_202_at_once(caller: Caller) -> None:
    caller.connect()
    response = caller.client.post(SLACK, json=CALL, headers=caller.headers(Prefer="respond-async"))
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.headers["Preference-Applied"] == "respond-async"


@pytest.mark.parametrize("value", BAD_WAITS)
def test_a_bad_prefer_wait_is_a_400_and_writes_nothing(caller: Caller, value: str) -> None:
    # Given a wait that is not a finite number of seconds from 0 to 60
    caller.connect()
    # When a call asks for it
    response = caller.client.post(SLACK, json=CALL, headers=caller.headers(Prefer=f"wait={value}"))
    # Then it is refused naming Prefer, and no call is written
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"] == "Prefer"
    assert caller.client.get("/function-calls", headers=caller.headers()).json()["items"] == []


@pytest.mark.parametrize("value", BAD_WAITS)
def test_a_bad_query_wait_is_a_400(caller: Caller, value: str) -> None:
    caller.connect()
    call_id = caller.client.post(SLACK, json=CALL, headers=caller.headers()).json()["id"]
    response = caller.client.get(
        f"/function-calls/{call_id}", params={"wait": value}, headers=caller.headers()
    )
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"] == "wait"


def test_the_wait_honoured_is_at_most_the_operators(
    caller: Caller, make_app: Callable[..., FastAPI]
) -> None:
    # Given PASSTHRU_MAX_WAIT_S=0.2
    client = TestClient(make_app(max_wait_s=0.2))
    short = Caller(client, caller.tenant, caller.key)
    short.connect()
    # When a call asks to wait 60 s (allowed to ask)
    response = short.client.post(SLACK, json=CALL, headers=short.headers(Prefer="wait=60"))
    # Then it is served 0.2 s, says so, and answers where the call stands
    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "wait=0.2"
    # And ?wait=60 is accepted too, served as long
    polled = short.client.get(
        f"/function-calls/{response.json()['id']}?wait=60", headers=short.headers()
    )
    assert polled.status_code == 200


def test_wait_zero_waits_not_at_all(caller: Caller) -> None:
    caller.connect()
    response = caller.client.post(SLACK, json=CALL, headers=caller.headers(Prefer="wait=0"))
    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "wait=0"


def test_a_wait_that_runs_out_answers_where_the_call_stands(caller: Caller) -> None:
    caller.connect()
    response = submit(caller, prefer="wait=0.2")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_a_call_written_before_the_database_went_away_is_answered_accepted(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the database goes away after a waiting call was written, while its caller waits
    caller.connect()

    def gone(*_: object) -> None:
        raise OperationalError("SELECT ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr("api.call_log.load_call", gone)
    # When the call is submitted with Prefer: wait
    response = caller.client.post(SLACK, json=CALL, headers=caller.headers(Prefer="wait=1"))
    # Then it is answered as accepted (202 with its id), not 503: a client that followed a
    # 503 would send the call a second time
    assert response.status_code == 202, response.text
    monkeypatch.undo()
    call_id = response.json()["id"]
    stored = caller.client.get(f"/function-calls/{call_id}", headers=caller.headers())
    assert stored.status_code == 200
    assert stored.json()["status"] == "queued"
