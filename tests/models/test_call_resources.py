"""The short answer to a finished call (`CallResult`): a failed call's says why, in
`error` and `error_message`, whether the API builds it from the row or a worker from the
attempt it just made."""

from __future__ import annotations

from datetime import UTC, datetime

from models.calls.resources import call_result
from models.calls.states import CallStatus
from models.db.tables import FunctionCall
from worker.calls.results import Attempted, Result

WHY = "timeout after the request may have reached the upstream"


def test_a_failed_calls_short_answer_has_its_error_message() -> None:
    call = FunctionCall(
        id="fc_1",
        tenant_id="tn_1",
        app="slack",
        function="slack-passthrough-request",
        user_id="u",
        connected_account_id="ca_1",
        method="POST",
        url="https://slack.com/api/chat.postMessage",
        status=CallStatus.FAILED,
        error="outcome_unknown",
        error_message=WHY,
    )
    answer = call_result(call).model_dump()
    assert (answer["error"], answer["error_message"]) == ("outcome_unknown", WHY)


def test_a_workers_answer_has_the_same_fields() -> None:
    result = Result(CallStatus.FAILED, "give up", error="outcome_unknown", error_message=WHY)
    attempted = Attempted("fc_1", "ca_1", 1, datetime(2030, 1, 1, tzinfo=UTC), result)
    assert attempted.answer().error_message == WHY
