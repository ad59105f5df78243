"""Both clients against a scripted stand-in API: the requests they send, how they read the
answers, their errors, retries, pagination and waiting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from passthru_client import (
    APIConnectionError,
    AsyncPassthru,
    AuthenticationError,
    BadRequest,
    Call,
    CallTimeout,
    Conflict,
    FunctionCall,
    NotFound,
    Passthru,
    PassthruError,
    RateLimited,
    ServerError,
)
from passthru_client._requests import submission_prefer

from tests.sdk.conftest import (
    API_KEY,
    BASE_URL,
    FakeApi,
    MakeClient,
    call_json,
    error_body,
    reply,
)

SLACK = "slack-passthrough-request"
PARAMS = {"method": "GET", "url": "conversations.list?limit=2"}
RESULT = {
    "id": "fc_1",
    "status": "completed",
    "network_code": "200",
    "output": {"ok": True, "channels": []},
    "headers": {"content-type": "application/json"},
    "error": None,
}


def long_poll(api: FakeApi, *answers: dict[str, Any]) -> Any:
    """A responder for `GET /function-calls/{id}?wait=N` that holds the request N seconds
    of the fake clock, then answers the next of `answers` (the last repeats)."""
    queue = list(answers)

    def respond(request: httpx.Request) -> httpx.Response:
        api.time.now += float(request.url.params.get("wait", "0"))
        body = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(200, json=body)

    return respond


# Submitting a call


def test_invoke_with_wait_sends_the_sdk_form_and_reads_the_200_result(
    client: Any, api: FakeApi
) -> None:
    api.script(reply(200, RESULT))

    call = client.invoke_function(
        SLACK, PARAMS, "ca_1", wait=10, idempotency_key="key-1", callback_url="https://x.test/cb"
    )

    request = api.last
    assert (request.method, request.url.path) == ("POST", "/function-calls")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["x-user-id"] == "user-42"
    assert request.headers["prefer"] == "wait=10"
    assert request.headers["idempotency-key"] == "key-1"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "function": SLACK,
        "params": PARAMS,
        "connected_account_id": "ca_1",
        "callback_url": "https://x.test/cb",
    }
    assert isinstance(call, FunctionCall)
    assert (call.id, call.status, call.network_code) == ("fc_1", "completed", "200")
    assert call.output == {"ok": True, "channels": []}
    assert call.headers == {"content-type": "application/json"}
    assert call.done
    assert call.ok
    assert call.app is None
    assert call.attempts is None
    # the long-poll must outlast the client's read timeout
    assert request.extensions["timeout"]["read"] == pytest.approx(30.0 + 10)


def test_invoke_without_wait_returns_the_queued_call(client: Any, api: FakeApi) -> None:
    api.script(reply(202, call_json("fc_9", "queued")))

    call = client.invoke_function(SLACK, PARAMS)

    request = api.last
    assert "prefer" not in request.headers
    assert "idempotency-key" not in request.headers
    assert json.loads(request.content) == {"function": SLACK, "params": PARAMS}
    assert (call.id, call.status, call.done, call.ok) == ("fc_9", "queued", False, False)
    assert call.app == "slack"
    assert call.connected_account_id == "ca_1"
    assert call.created_at == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert call.attempt_count == 0
    assert call.raw["function"] == SLACK


def test_invoke_without_wait_takes_the_result_of_the_servers_default_wait(
    client: Any, api: FakeApi
) -> None:
    # Given a server whose operator set PASSTHRU_DEFAULT_WAIT_S: the call ended within it
    api.script(reply(200, RESULT))
    # When a call is invoked without a wait
    call = client.invoke_function(SLACK, PARAMS)
    # Then no Prefer is sent, the 200 result is the call, and nothing more is asked
    request = api.last
    assert "prefer" not in request.headers
    assert len(api.requests) == 1
    assert (call.status, call.network_code, call.done) == ("completed", "200", True)
    assert call.output == {"ok": True, "channels": []}
    # And the read timeout outlasts the longest default wait a server may hold it
    assert request.extensions["timeout"]["read"] == pytest.approx(30.0 + 60)


def test_wait_zero_asks_for_the_answer_at_once(client: Any, api: FakeApi) -> None:
    api.script(reply(202, call_json("fc_9", "queued")))

    call = client.invoke_function(SLACK, PARAMS, wait=0)

    request = api.last
    assert request.headers["prefer"] == "respond-async"
    assert request.extensions["timeout"]["read"] == pytest.approx(30.0)
    assert len(api.requests) == 1
    assert (call.id, call.status, call.done) == ("fc_9", "queued", False)


@pytest.mark.parametrize(
    ("wait", "prefer", "held_s"),
    [
        (None, None, 60.0),
        (0, "respond-async", 0.0),
        (0.0, "respond-async", 0.0),
        (2.5, "wait=2.5", 2.5),
        (60, "wait=60", 60.0),
        (90, "wait=60", 60.0),
    ],
)
def test_the_prefer_of_a_submission(wait: float | None, prefer: str | None, held_s: float) -> None:
    assert submission_prefer(wait) == (prefer, held_s)


def test_user_id_per_call_overrides_the_default_and_none_sends_no_header(
    make_client: MakeClient, api: FakeApi
) -> None:
    api.script(reply(202, call_json()))
    with_default = make_client(user_id="user-42")
    with_default.invoke_function(SLACK, PARAMS, user_id="user-7")
    assert api.last.headers["x-user-id"] == "user-7"

    anonymous = make_client()
    anonymous.invoke_function(SLACK, PARAMS)
    assert "x-user-id" not in api.last.headers


def long_poll_on_submit(api: FakeApi, held_s: float, answer: dict[str, Any]) -> Any:
    """A responder for a submission with `Prefer: wait` that holds it `held_s` seconds of
    the fake clock, then answers 202 with `answer`."""

    def respond(_: httpx.Request) -> httpx.Response:
        api.time.now += held_s
        return httpx.Response(202, json=answer)

    return respond


def test_a_wait_beyond_60_s_goes_on_by_long_polling(client: Any, api: FakeApi) -> None:
    api.script(
        long_poll_on_submit(api, 60, call_json("fc_1", "queued")),
        long_poll(api, call_json("fc_1", "completed")),
    )

    call = client.invoke_function(SLACK, PARAMS, wait=90)

    assert api.requests[0].headers["prefer"] == "wait=60"
    poll = api.requests[1]
    assert (poll.method, poll.url.path) == ("GET", "/function-calls/fc_1")
    assert poll.url.params["wait"] == "30"
    assert call.status == "completed"
    assert call.done
    assert len(api.requests) == 2


def test_a_wait_that_runs_out_returns_the_unfinished_call(client: Any, api: FakeApi) -> None:
    api.script(long_poll_on_submit(api, 5, call_json("fc_1", "running")))

    call = client.invoke_function(SLACK, PARAMS, wait=5)

    assert len(api.requests) == 1
    assert call.status == "running"
    assert not call.done


def test_negative_wait_is_refused_before_sending(client: Any, api: FakeApi) -> None:
    with pytest.raises(ValueError, match="negative"):
        client.invoke_function(SLACK, PARAMS, wait=-1)
    assert api.requests == []


# Errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequest),
        (401, AuthenticationError),
        (404, NotFound),
        (409, Conflict),
        (429, RateLimited),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_error_answers_raise_their_class_with_the_details(
    make_client: MakeClient, api: FakeApi, status: int, kind: type[PassthruError]
) -> None:
    client = make_client(max_retries=0)
    api.script(
        reply(
            status,
            error_body(
                "invalid_params",
                ("url", "host 'evil.test' is not one of this app's hosts"),
                ("method", "must be one of GET, POST"),
            ),
        )
    )

    with pytest.raises(kind) as caught:
        client.invoke_function(SLACK, PARAMS)

    err = caught.value
    assert isinstance(err, PassthruError)
    assert err.status_code == status
    assert err.error == "invalid_params"
    assert [(d.field, d.message) for d in err.error_details] == [
        ("url", "host 'evil.test' is not one of this app's hosts"),
        ("method", "must be one of GET, POST"),
    ]
    assert str(err) == (
        f"invalid_params (HTTP {status}): url: host 'evil.test' is not one of this app's "
        "hosts; method: must be one of GET, POST"
    )


def test_an_error_without_the_api_shape_still_raises_clearly(
    make_client: MakeClient, api: FakeApi
) -> None:
    client = make_client(max_retries=0)
    api.script(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(ServerError) as caught:
        client.get_call("fc_1")
    assert caught.value.error == "http_502"
    assert "Bad Gateway" in str(caught.value)

    api.script(httpx.Response(418, json={"unexpected": True}))
    with pytest.raises(PassthruError) as teapot:
        client.get_call("fc_1")
    assert type(teapot.value) is PassthruError
    assert teapot.value.status_code == 418


def test_a_success_that_is_not_json_is_an_error(client: Any, api: FakeApi) -> None:
    api.script(httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(PassthruError) as caught:
        client.get_call("fc_1")
    assert caught.value.error == "invalid_response"
    assert "captive portal" in str(caught.value)


def test_the_api_key_is_required() -> None:
    from passthru_client import Passthru

    with pytest.raises(ValueError, match="api_key"):
        Passthru("  ")


# Retries


def test_a_503_is_retried_after_its_retry_after(client: Any, api: FakeApi) -> None:
    api.script(
        reply(503, error_body("unavailable", ("database", "retry shortly")), {"Retry-After": "2"}),
        reply(202, call_json()),
    )

    call = client.invoke_function(SLACK, PARAMS)  # a POST without a key: 503 is safe

    assert call.id == "fc_1"
    assert len(api.requests) == 2
    assert api.time.sleeps == [2.0]
    assert api.bodies()[0] == api.bodies()[1]


def test_retries_back_off_exponentially_then_give_up(make_client: MakeClient, api: FakeApi) -> None:
    client = make_client()  # max_retries=3 by default
    api.script(reply(503, error_body("unavailable")))

    with pytest.raises(ServerError) as caught:
        client.get_call("fc_1")

    assert caught.value.status_code == 503
    assert len(api.requests) == 4
    sleeps = api.time.sleeps
    assert len(sleeps) == 3
    for slept, ceiling in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert ceiling / 2 <= slept <= ceiling


def test_max_retries_zero_sends_once(make_client: MakeClient, api: FakeApi) -> None:
    client = make_client(max_retries=0)
    api.script(reply(503, error_body("unavailable")))
    with pytest.raises(ServerError):
        client.get_call("fc_1")
    assert len(api.requests) == 1
    assert api.time.sleeps == []


def test_a_retry_after_beyond_a_minute_is_not_waited_for(client: Any, api: FakeApi) -> None:
    api.script(reply(429, error_body("rate_limited"), {"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as caught:
        client.get_call("fc_1")
    assert len(api.requests) == 1
    assert caught.value.headers["retry-after"] == "3600"


def test_connection_failures_are_retried_even_for_a_post(client: Any, api: FakeApi) -> None:
    api.script(
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        reply(202, call_json()),
    )

    call = client.invoke_function(SLACK, PARAMS)

    assert call.id == "fc_1"
    assert len(api.requests) == 3
    assert len(api.time.sleeps) == 2


def test_connection_failures_end_in_api_connection_error(
    make_client: MakeClient, api: FakeApi
) -> None:
    client = make_client(max_retries=2)
    api.script(httpx.ConnectError("connection refused"))

    with pytest.raises(APIConnectionError) as caught:
        client.get_call("fc_1")

    assert len(api.requests) == 3
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "connection refused" in str(caught.value)
    assert "after 2 retries" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("connection reset"),
    ],
)
def test_a_post_is_not_retried_after_it_may_have_been_acted_on(
    client: Any, api: FakeApi, failure: httpx.TransportError
) -> None:
    api.script(failure, reply(202, call_json()))

    with pytest.raises(APIConnectionError) as caught:
        client.invoke_function(SLACK, PARAMS)
    assert len(api.requests) == 1
    assert "idempotency_key" in str(caught.value)

    api.script(failure, reply(202, {"batch_id": "bt_1", "accepted": [], "rejected": []}))
    with pytest.raises(APIConnectionError):
        client.batch([{"function": SLACK, "params": PARAMS}])
    assert len(api.requests) == 2


def test_a_post_with_an_idempotency_key_is_retried_after_a_read_timeout(
    client: Any, api: FakeApi
) -> None:
    api.script(httpx.ReadTimeout("read timed out"), reply(202, call_json()))

    call = client.invoke_function(SLACK, PARAMS, idempotency_key="order-1")

    assert call.id == "fc_1"
    assert [r.headers["idempotency-key"] for r in api.requests] == ["order-1", "order-1"]


def test_a_get_is_retried_after_a_read_timeout(client: Any, api: FakeApi) -> None:
    api.script(httpx.ReadTimeout("read timed out"), reply(200, call_json(status="running")))
    assert client.get_call("fc_1").status == "running"
    assert len(api.requests) == 2


def test_a_gateway_error_is_retried_only_when_repeating_is_safe(client: Any, api: FakeApi) -> None:
    api.script(reply(502, error_body("bad_gateway")), reply(202, call_json()))
    with pytest.raises(ServerError):
        client.invoke_function(SLACK, PARAMS)
    assert len(api.requests) == 1

    api.script(reply(504, error_body("gateway_timeout")), reply(202, call_json()))
    assert client.invoke_function(SLACK, PARAMS, idempotency_key="k").id == "fc_1"
    assert len(api.requests) == 3

    api.script(reply(502, error_body("bad_gateway")), reply(200, call_json()))
    assert client.get_call("fc_1").id == "fc_1"
    assert len(api.requests) == 5


# Waiting


def test_wait_for_long_polls_in_chunks_of_60_s_then_times_out(client: Any, api: FakeApi) -> None:
    api.script(long_poll(api, call_json("fc_1", "running")))

    with pytest.raises(CallTimeout) as caught:
        client.wait_for("fc_1", timeout=150)

    assert [r.url.params["wait"] for r in api.requests] == ["60", "60", "30"]
    assert all(r.url.path == "/function-calls/fc_1" for r in api.requests)
    assert all(r.extensions["timeout"]["read"] >= 60 for r in api.requests)
    err = caught.value
    assert isinstance(err, TimeoutError)
    assert err.call is not None
    assert err.call.status == "running"
    assert "fc_1" in str(err)
    assert "150" in str(err)


def test_wait_for_returns_as_soon_as_the_call_is_final(client: Any, api: FakeApi) -> None:
    api.script(
        long_poll(
            api,
            call_json("fc_1", "retrying"),
            call_json("fc_1", "failed", error="upstream_error", network_code="500"),
        )
    )

    call = client.wait_for("fc_1", timeout=300)

    assert len(api.requests) == 2
    assert (call.status, call.error, call.network_code, call.done, call.ok) == (
        "failed",
        "upstream_error",
        "500",
        True,
        False,
    )


def test_wait_for_with_no_time_checks_once(client: Any, api: FakeApi) -> None:
    api.script(reply(200, call_json("fc_1", "queued")))
    with pytest.raises(CallTimeout):
        client.wait_for("fc_1", timeout=0)
    assert len(api.requests) == 1
    assert "wait" not in api.last.url.params


def test_get_call_reads_every_attempt(client: Any, api: FakeApi) -> None:
    attempts = [
        {
            "number": 1,
            "started_at": "2025-01-02T03:04:05Z",
            "duration_ms": 30,
            "network_code": "503",
            "error": None,
            "error_message": None,
            "decision": "retry in 1.0 s: 503",
            "rate_wait_ms": 5,
            "rate_wait_reason": "app limit",
        }
    ]
    api.script(reply(200, call_json("fc/odd id", "completed", attempts=attempts)))

    call = client.get_call("fc/odd id", wait=5)

    assert api.last.url.raw_path.startswith(b"/function-calls/fc%2Fodd%20id?")
    assert api.last.url.params["wait"] == "5"
    assert call.attempts is not None
    assert len(call.attempts) == 1
    first = call.attempts[0]
    assert (first.number, first.network_code, first.rate_wait_reason) == (1, "503", "app limit")
    assert first.started_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_cancel(client: Any, api: FakeApi) -> None:
    api.script(reply(200, call_json("fc_1", "cancelled", error="cancelled")))
    assert client.cancel("fc_1").status == "cancelled"
    assert (api.last.method, api.last.url.path) == ("POST", "/function-calls/fc_1/cancel")

    api.script(reply(409, error_body("not_cancellable", ("id", "call fc_1 is running"))))
    with pytest.raises(Conflict, match="not_cancellable"):
        client.cancel("fc_1")


# The log


def test_iter_calls_follows_next_cursor_and_passes_filters_through(
    client: Any, api: FakeApi
) -> None:
    pages = [
        {"items": [call_json("fc_5"), call_json("fc_4")], "next_cursor": "fc_4"},
        {"items": [call_json("fc_3"), call_json("fc_2")], "next_cursor": "fc_2"},
        {"items": [call_json("fc_1")], "next_cursor": None},
    ]
    api.script(*(reply(200, page) for page in pages))
    since = datetime(2025, 1, 1, tzinfo=UTC)

    ids = [
        c.id
        for c in client.iter_calls(
            batch_id="bt_1", status="completed", since=since, page_size=2, region="eu"
        )
    ]

    assert ids == ["fc_5", "fc_4", "fc_3", "fc_2", "fc_1"]
    assert len(api.requests) == 3
    for request, cursor in zip(api.requests, (None, "fc_4", "fc_2"), strict=True):
        params = dict(request.url.params)
        assert (request.method, request.url.path) == ("GET", "/function-calls")
        assert params.pop("cursor", None) == cursor
        assert params == {
            "batch_id": "bt_1",
            "status": "completed",
            "since": "2025-01-01T00:00:00+00:00",
            "limit": "2",
            "region": "eu",
        }


def test_iter_calls_of_an_empty_log(client: Any, api: FakeApi) -> None:
    api.script(reply(200, {"items": [], "next_cursor": None}))
    assert list(client.iter_calls()) == []
    assert dict(api.last.url.params) == {}


def test_list_calls_returns_one_page(client: Any, api: FakeApi) -> None:
    api.script(reply(200, {"items": [call_json("fc_2")], "next_cursor": "fc_2"}))
    page = client.list_calls(cursor="fc_3", app="slack")
    assert [c.id for c in page.items] == ["fc_2"]
    assert page.next_cursor == "fc_2"
    assert dict(api.last.url.params) == {"cursor": "fc_3", "app": "slack"}


# Batches


def test_batch_takes_dicts_and_calls_and_reads_each_verdict(client: Any, api: FakeApi) -> None:
    api.script(
        reply(
            202,
            {
                "batch_id": "bt_1",
                "accepted": [{"index": 2, "id": "fc_c"}, {"index": 0, "id": "fc_a"}],
                "rejected": [
                    {
                        "index": 1,
                        "error": "invalid_params",
                        "error_details": [{"field": "url", "message": "is required"}],
                    }
                ],
            },
        )
    )
    calls: list[Any] = [
        {"function": SLACK, "params": PARAMS},
        Call(SLACK, {"method": "GET", "url": ""}, user_id="user-9"),
        Call(SLACK, PARAMS, connected_account_id="ca_1", callback_url="https://x.test/cb"),
    ]

    result = client.batch(calls)

    request = api.last
    assert (request.method, request.url.path) == ("POST", "/function-calls/batch")
    assert request.headers["x-user-id"] == "user-42"
    assert json.loads(request.content) == {
        "calls": [
            {"function": SLACK, "params": PARAMS},
            {"function": SLACK, "params": {"method": "GET", "url": ""}, "user_id": "user-9"},
            {
                "function": SLACK,
                "params": PARAMS,
                "connected_account_id": "ca_1",
                "callback_url": "https://x.test/cb",
            },
        ]
    }
    assert result.batch_id == "bt_1"
    assert result.ids == ["fc_a", "fc_c"]
    assert not result.ok
    rejected = result.rejected[0]
    assert (rejected.index, rejected.error) == (1, "invalid_params")
    assert rejected.error_details[0].field == "url"
    assert str(rejected) == "call 1: invalid_params: url: is required"


def test_get_batch(client: Any, api: FakeApi) -> None:
    api.script(
        reply(
            200,
            {
                "id": "bt_1",
                "created_at": "2025-01-02T03:04:05Z",
                "accepted": 3,
                "rejected": 1,
                "counts": {"completed": 2, "queued": 1},
                "finished": 2,
                "done": False,
            },
        )
    )
    batch = client.get_batch("bt_1")
    assert api.last.url.path == "/batches/bt_1"
    assert (batch.accepted, batch.rejected, batch.finished, batch.done) == (3, 1, 2, False)
    assert batch.counts == {"completed": 2, "queued": 1}


# Connected accounts, functions, limits


ACCOUNT = {
    "id": "ca_1",
    "app": "slack",
    "user_id": "user-42",
    "status": "active",
    "connection_config": None,
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": "2025-01-02T03:04:05Z",
    "last_used_at": None,
}


def test_connected_accounts(client: Any, api: FakeApi) -> None:
    api.script(reply(201, ACCOUNT))
    account = client.connect_account("slack", {"access_token": "xoxb-1"}, {"team": "t1"})
    assert (api.last.method, api.last.url.path) == ("POST", "/connected-accounts")
    assert api.last.headers["x-user-id"] == "user-42"
    assert json.loads(api.last.content) == {
        "app": "slack",
        "credentials": {"access_token": "xoxb-1"},
        "connection_config": {"team": "t1"},
    }
    assert (account.id, account.app, account.status) == ("ca_1", "slack", "active")

    client.connect_account("slack", {"access_token": "xoxb-2"}, user_id="user-8")
    assert api.last.headers["x-user-id"] == "user-8"
    assert "connection_config" not in json.loads(api.last.content)

    api.script(reply(200, {"items": [ACCOUNT, {**ACCOUNT, "id": "ca_2"}], "next_cursor": None}))
    accounts = client.list_accounts(app="slack", user_id="user-42")
    assert [a.id for a in accounts] == ["ca_1", "ca_2"]
    assert dict(api.last.url.params) == {"app": "slack", "user_id": "user-42"}

    api.script(reply(200, {**ACCOUNT, "status": "disabled"}))
    updated = client.update_account("ca_1", status="disabled")
    assert (api.last.method, api.last.url.path) == ("PATCH", "/connected-accounts/ca_1")
    assert json.loads(api.last.content) == {"status": "disabled"}
    assert updated.status == "disabled"

    api.script(httpx.Response(204))
    assert client.delete_account("ca_1") is None
    assert (api.last.method, api.last.url.path) == ("DELETE", "/connected-accounts/ca_1")

    api.script(reply(404, error_body("not_found", ("connected account", "no such account"))))
    with pytest.raises(NotFound):
        client.delete_account("ca_1")


def test_list_accounts_reads_every_page_with_the_filters_on_each(client: Any, api: FakeApi) -> None:
    # Given accounts on three pages
    pages = [
        {"items": [{**ACCOUNT, "id": "ca_5"}, {**ACCOUNT, "id": "ca_4"}], "next_cursor": "c1"},
        {"items": [{**ACCOUNT, "id": "ca_3"}, {**ACCOUNT, "id": "ca_2"}], "next_cursor": "c2"},
        {"items": [{**ACCOUNT, "id": "ca_1"}], "next_cursor": None},
    ]
    api.script(*(reply(200, page) for page in pages))
    # When they are listed, and iterated
    listed = client.list_accounts(app="slack", status="active", page_size=2, region="eu")
    api.script(*(reply(200, page) for page in pages))
    iterated = list(client.iter_accounts(app="slack", status="active", page_size=2, region="eu"))
    # Then every account comes once, in the API's order, each page asked with the filters
    ids = ["ca_5", "ca_4", "ca_3", "ca_2", "ca_1"]
    assert [a.id for a in listed] == ids
    assert [a.id for a in iterated] == ids
    assert len(api.requests) == 6
    for request, cursor in zip(api.requests, (None, "c1", "c2") * 2, strict=True):
        params = dict(request.url.params)
        assert (request.method, request.url.path) == ("GET", "/connected-accounts")
        assert params.pop("cursor", None) == cursor
        assert params == {"app": "slack", "status": "active", "limit": "2", "region": "eu"}


def test_list_accounts_page_reads_one_page(client: Any, api: FakeApi) -> None:
    api.script(reply(200, {"items": [ACCOUNT], "next_cursor": "c9"}))
    page = client.list_accounts_page(cursor="c8", user_id="user-42", limit=1)
    assert ([a.id for a in page.items], page.next_cursor) == (["ca_1"], "c9")
    assert dict(api.last.url.params) == {"user_id": "user-42", "limit": "1", "cursor": "c8"}


def test_rate_limits_reads_every_page_of_accounts(client: Any, api: FakeApi) -> None:
    cap = {"limit": 10, "period_s": 1.0, "burst": 1, "lanes": {}}
    item = {"app": "slack", "user_id": "u", "paused_until": None, "limits": []}
    api.script(
        reply(
            200,
            {
                "as_of": "2025-01-02T03:04:05+00:00",
                "tenant_cap": cap,
                "items": [{**item, "connected_account_id": "ca_3"}],
                "next_cursor": "c1",
            },
        ),
        reply(
            200,
            {"as_of": "later", "tenant_cap": cap, "items": [], "next_cursor": "c2"},
        ),
        reply(
            200,
            {
                "as_of": "later still",
                "tenant_cap": cap,
                "items": [{**item, "connected_account_id": "ca_1"}],
                "next_cursor": None,
            },
        ),
    )
    state = client.rate_limits(page_size=50)
    assert [i["connected_account_id"] for i in state["items"]] == ["ca_3", "ca_1"]
    assert (state["as_of"], state["tenant_cap"], state["next_cursor"]) == (
        "2025-01-02T03:04:05+00:00",
        cap,
        None,
    )
    assert [dict(r.url.params) for r in api.requests] == [
        {"limit": "50"},
        {"limit": "50", "cursor": "c1"},
        {"limit": "50", "cursor": "c2"},
    ]


def test_list_functions_and_rate_limits(client: Any, api: FakeApi) -> None:
    api.script(
        reply(
            200,
            {
                "functions": [
                    {
                        "name": SLACK,
                        "app": "slack",
                        "type": "passthrough",
                        "description": "Make an authenticated request to the Slack API",
                        "parameters": {"type": "object", "required": ["method", "url"]},
                    }
                ]
            },
        )
    )
    functions = client.list_functions()
    assert api.last.url.path == "/functions"
    assert dict(api.last.url.params) == {"type": "passthrough"}
    assert [f.name for f in functions] == [SLACK]
    assert functions[0].parameters["required"] == ["method", "url"]

    api.script(reply(200, {"functions": []}))
    assert client.list_functions(category="chat", q="sla") == []
    assert dict(api.last.url.params) == {"type": "passthrough", "category": "chat", "q": "sla"}

    api.script(reply(200, {"items": [], "tenant_cap": None, "next_cursor": None}))
    assert client.rate_limits() == {"items": [], "tenant_cap": None, "next_cursor": None}
    assert api.last.url.path == "/rate-limits"


def test_closing(make_client: MakeClient, api: FakeApi) -> None:
    client = make_client()
    assert not client.is_closed
    client.close()
    assert client.is_closed


def test_create_connect_session(client: Any, api: FakeApi) -> None:
    link = {
        "id": "cs_1",
        "url": "https://pt.example/connect/tok",
        "expires_at": "2025-01-02T03:14:05Z",
    }
    api.script(reply(201, link))
    made = client.create_connect_session("hubspot", "https://app.example/back")
    assert (api.last.method, api.last.url.path) == ("POST", "/connect-sessions")
    assert api.last.headers["x-user-id"] == "user-42"
    assert json.loads(api.last.content) == {
        "app": "hubspot",
        "redirect_url": "https://app.example/back",
    }
    assert (made.id, made.url) == ("cs_1", "https://pt.example/connect/tok")
    assert made.expires_at is not None
    assert made.expires_at.minute == 14

    api.script(reply(201, link))
    client.create_connect_session(
        "zendesk",
        "https://app.example/back",
        user_id="user-8",
        scopes=["read"],
        connection_config={"subdomain": "acme"},
        connected_account_id="ca_9",
    )
    assert api.last.headers["x-user-id"] == "user-8"
    assert json.loads(api.last.content) == {
        "app": "zendesk",
        "redirect_url": "https://app.example/back",
        "scopes": ["read"],
        "connection_config": {"subdomain": "acme"},
        "connected_account_id": "ca_9",
    }

    api.script(reply(400, error_body("invalid_params", ("redirect_url", "must be https"))))
    with pytest.raises(BadRequest) as caught:
        client.create_connect_session("hubspot", "http://app.example/back")
    assert caught.value.error_details[0].field == "redirect_url"


# --- hostile or odd answers, and values the SDK must not send ------------------------------


def test_a_wait_the_api_cuts_short_is_asked_again_after_a_growing_pause(
    client: Any, api: FakeApi
) -> None:
    # An API whose PASSTHRU_MAX_WAIT_S is 0 answers each long poll at once
    api.script(reply(200, call_json("fc_1", "running")))
    with pytest.raises(CallTimeout):
        client.wait_for("fc_1", timeout=10)
    # Not a tight loop: a few requests, paused 0.25 s, 0.5 s, 1 s, then 2 s apart
    assert 5 <= len(api.requests) <= 10
    assert api.time.sleeps[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(api.time.sleeps) == 2.0


def test_a_cursor_the_api_gives_twice_stops_the_walk(client: Any, api: FakeApi) -> None:
    page = {"items": [call_json("fc_1")], "next_cursor": "fc_1"}
    api.script(reply(200, page))
    with pytest.raises(PassthruError) as caught:
        list(client.iter_calls())
    assert caught.value.error == "repeated_cursor"
    assert len(api.requests) == 2
    api.requests.clear()
    api.script(reply(200, {"items": [], "next_cursor": "same"}))
    with pytest.raises(PassthruError):
        client.list_accounts()
    assert len(api.requests) == 2


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_an_id_that_would_name_another_resource_is_refused_before_sending(
    client: Any, api: FakeApi, bad: str
) -> None:
    with pytest.raises(ValueError, match="is not an id"):
        client.get_call(bad)
    with pytest.raises(ValueError, match="is not an id"):
        client.delete_account(bad)
    assert api.requests == []


def test_an_api_key_or_user_id_with_a_control_character_is_refused_without_echoing_it(
    make_client: MakeClient, api: FakeApi
) -> None:
    for kind in (Passthru, AsyncPassthru):
        with pytest.raises(ValueError, match="never has") as caught:
            kind("pt_secret\nX-Evil: 1", BASE_URL)
        assert "pt_secret" not in str(caught.value)
    with pytest.raises(ValueError, match="control character"):
        make_client(user_id="alice\r\nX-Evil: 1")
    client = make_client()
    with pytest.raises(ValueError, match="control character"):
        client.invoke_function(SLACK, PARAMS, user_id="bob\n")
    assert api.requests == []


def test_a_user_id_beyond_ascii_is_sent_in_utf8_as_the_api_reads_it(
    make_client: MakeClient, api: FakeApi
) -> None:
    api.script(reply(202, call_json()))
    make_client(user_id="josé 日本").invoke_function(SLACK, PARAMS)
    assert (
        api.last.headers.raw[[k.lower() for k, _ in api.last.headers.raw].index(b"x-user-id")][1]
        == "josé 日本".encode()
    )


@pytest.mark.parametrize("value", ["-5", "1.5", "inf", "nan", "abc 1", "1e3"])
def test_a_retry_after_that_is_no_whole_number_or_date_falls_back_to_the_backoff(
    client: Any, api: FakeApi, value: str
) -> None:
    api.script(
        reply(503, error_body("unavailable"), {"Retry-After": value}), reply(200, call_json())
    )
    client.get_call("fc_1")
    assert len(api.time.sleeps) == 1
    assert 0.25 <= api.time.sleeps[0] <= 1.0  # the first backoff, not the header's value
