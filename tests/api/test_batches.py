"""`POST /function-calls/batch`: each item is checked, and kept, with its own params."""

from __future__ import annotations

from sqlalchemy import Engine

from tests.api.conftest import CALL, Caller, stored_call


def test_batch_items_carry_their_own_params(caller: Caller, engine: Engine) -> None:
    # Given a batch with one call asking for one attempt and one asking for too long a timeout
    caller.connect()
    calls = [
        {"function": "slack-passthrough-request", "params": {**CALL, "retry": {"max_attempts": 1}}},
        {"function": "slack-passthrough-request", "params": {**CALL, "timeout": {"total_s": 999}}},
    ]
    response = caller.client.post(
        "/function-calls/batch", json={"calls": calls}, headers=caller.headers()
    )
    # Then the first is accepted with its params and the second rejected, saying why
    assert response.status_code == 202, response.text
    body = response.json()
    [accepted] = body["accepted"]
    assert stored_call(engine, accepted["id"]).options == {"retry": {"max_attempts": 1}}
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert rejected["error_details"][0]["field"].endswith("timeout.total_s")
