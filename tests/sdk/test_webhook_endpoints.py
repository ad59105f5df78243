"""Both clients' webhook methods against a scripted stand-in API: the tenant's endpoint and
its secret, a call's deliveries and redelivery (the requests, the answers read, the errors
and which of them are retried)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from passthru_client import (
    APIConnectionError,
    BadRequest,
    Conflict,
    Delivery,
    DeliveryAttempt,
    NotFound,
    ServerError,
    WebhookEndpoint,
)

from tests.sdk.conftest import FakeApi, MakeClient, error_body, reply

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
NO_ENDPOINT = error_body(
    "not_found", ("webhook-endpoint", "none yet: create it with PUT /webhook-endpoint")
)


def endpoint_json(**extra: Any) -> dict[str, Any]:
    """The endpoint as `GET /webhook-endpoint` answers it (no secret)."""
    return {
        "url": "https://example.test/hooks",
        "enabled": True,
        "disabled_at": None,
        "disabled_reason": None,
        "updated_at": "2025-01-02T03:04:05.123456Z",
        **extra,
    }


def delivery_json(**extra: Any) -> dict[str, Any]:
    return {
        "id": "msg_fc_1",
        "event": "function_call.completed",
        "url": "https://example.test/hooks",
        "status": "succeeded",
        "attempt_count": 2,
        "next_attempt_at": None,
        "created_at": "2025-01-02T03:04:05Z",
        "finished_at": "2025-01-02T03:04:07.500000+00:00",
        "attempts": [
            {
                "number": 1,
                "started_at": "2025-01-02T03:04:05.100000Z",
                "duration_ms": 3,
                "status_code": None,
                "error": "ConnectError: connection refused",
                "decision": "retry in 1 s",
            },
            {
                "number": 2,
                "started_at": "2025-01-02T03:04:07Z",
                "duration_ms": 12,
                "status_code": 204,
                "error": None,
                "decision": "delivered (204)",
            },
        ],
        **extra,
    }


# The endpoint and its secret


def test_set_webhook_endpoint_puts_the_url_and_reads_the_secret_shown_once(
    client: Any, api: FakeApi
) -> None:
    api.script(reply(200, endpoint_json(secret=SECRET)))

    endpoint = client.set_webhook_endpoint("https://example.test/hooks")

    request = api.last
    assert (request.method, request.url.path) == ("PUT", "/webhook-endpoint")
    assert json.loads(request.content) == {"url": "https://example.test/hooks"}
    assert isinstance(endpoint, WebhookEndpoint)
    assert endpoint.url == "https://example.test/hooks"
    assert endpoint.enabled
    assert (endpoint.disabled_at, endpoint.disabled_reason) == (None, None)
    assert endpoint.updated_at == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert endpoint.secret == SECRET
    assert SECRET not in repr(endpoint)  # a logged endpoint does not leak its secret
    assert endpoint.raw["secret"] == SECRET


def test_set_webhook_endpoint_to_none_sends_null_and_no_secret_comes_back_again(
    client: Any, api: FakeApi
) -> None:
    api.script(reply(200, endpoint_json(url=None)))

    endpoint = client.set_webhook_endpoint(None)

    assert json.loads(api.last.content) == {"url": None}
    assert endpoint.url is None
    assert endpoint.secret is None
    assert "secret" not in endpoint.raw


def test_set_webhook_endpoint_refused(client: Any, api: FakeApi) -> None:
    api.script(reply(400, error_body("invalid_params", ("callback_url", "must be https"))))
    with pytest.raises(BadRequest) as caught:
        client.set_webhook_endpoint("http://example.test/hooks")
    assert caught.value.error == "invalid_params"
    assert caught.value.error_details[0].field == "callback_url"


def test_get_webhook_endpoint_reads_a_disabled_endpoint_without_secret(
    client: Any, api: FakeApi
) -> None:
    api.script(
        reply(
            200,
            endpoint_json(
                enabled=False,
                disabled_at="2025-01-03T00:00:00Z",
                disabled_reason="the endpoint answered 410 Gone",
            ),
        )
    )

    endpoint = client.get_webhook_endpoint()

    assert (api.last.method, api.last.url.path) == ("GET", "/webhook-endpoint")
    assert api.last.content == b""
    assert not endpoint.enabled
    assert endpoint.disabled_at == datetime(2025, 1, 3, tzinfo=UTC)
    assert endpoint.disabled_reason == "the endpoint answered 410 Gone"
    assert endpoint.secret is None


def test_get_webhook_endpoint_before_any_is_not_found(client: Any, api: FakeApi) -> None:
    api.script(reply(404, NO_ENDPOINT))
    with pytest.raises(NotFound) as caught:
        client.get_webhook_endpoint()
    assert caught.value.error == "not_found"
    assert caught.value.error_details[0].field == "webhook-endpoint"


def test_rotate_webhook_secret_posts_and_reads_the_new_secret(client: Any, api: FakeApi) -> None:
    api.script(reply(200, endpoint_json(secret=SECRET)))

    endpoint = client.rotate_webhook_secret()

    request = api.last
    assert (request.method, request.url.path) == ("POST", "/webhook-endpoint/rotate-secret")
    assert request.content == b""
    assert "idempotency-key" not in request.headers
    assert endpoint.secret == SECRET
    assert endpoint.enabled

    api.script(reply(404, NO_ENDPOINT))
    with pytest.raises(NotFound):
        client.rotate_webhook_secret()


# A call's deliveries


def test_list_deliveries_reads_each_delivery_and_its_attempts(client: Any, api: FakeApi) -> None:
    api.script(
        reply(
            200,
            {
                "items": [
                    delivery_json(),
                    delivery_json(
                        id="msg_fc_1b",
                        status="pending",
                        attempt_count=0,
                        next_attempt_at="2025-01-02T03:05:00Z",
                        finished_at=None,
                        attempts=[],
                    ),
                ]
            },
        )
    )

    deliveries = client.list_deliveries("fc/odd id")

    request = api.last
    assert request.method == "GET"
    assert request.url.raw_path == b"/function-calls/fc%2Fodd%20id/deliveries"
    assert [type(d) for d in deliveries] == [Delivery, Delivery]
    done, pending = deliveries
    assert (done.id, done.event, done.url, done.status, done.attempt_count) == (
        "msg_fc_1",
        "function_call.completed",
        "https://example.test/hooks",
        "succeeded",
        2,
    )
    assert done.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert done.finished_at == datetime(2025, 1, 2, 3, 4, 7, 500000, tzinfo=UTC)
    assert done.next_attempt_at is None
    assert done.attempts == [
        DeliveryAttempt(
            number=1,
            started_at=datetime(2025, 1, 2, 3, 4, 5, 100000, tzinfo=UTC),
            duration_ms=3,
            status_code=None,
            error="ConnectError: connection refused",
            decision="retry in 1 s",
        ),
        DeliveryAttempt(
            number=2,
            started_at=datetime(2025, 1, 2, 3, 4, 7, tzinfo=UTC),
            duration_ms=12,
            status_code=204,
            error=None,
            decision="delivered (204)",
        ),
    ]
    assert (pending.status, pending.attempts, pending.finished_at) == ("pending", [], None)
    assert pending.next_attempt_at == datetime(2025, 1, 2, 3, 5, tzinfo=UTC)


def test_list_deliveries_of_a_call_without_any(client: Any, api: FakeApi) -> None:
    api.script(reply(200, {"items": []}))
    assert client.list_deliveries("fc_1") == []

    api.script(reply(404, error_body("not_found", ("id", "no call fc_x"))))
    with pytest.raises(NotFound):
        client.list_deliveries("fc_x")


def test_redeliver_posts_and_takes_the_empty_202(client: Any, api: FakeApi) -> None:
    api.script(httpx.Response(202))

    assert client.redeliver("fc_1") is None

    request = api.last
    assert (request.method, request.url.path) == ("POST", "/function-calls/fc_1/redeliver")
    assert request.content == b""


def test_redeliver_errors(client: Any, api: FakeApi) -> None:
    api.script(
        reply(
            409,
            error_body("not_finished", ("id", "call fc_1 is running; it has no result to send")),
        )
    )
    with pytest.raises(Conflict) as conflict:
        client.redeliver("fc_1")
    assert (conflict.value.status_code, conflict.value.error) == (409, "not_finished")

    api.script(
        reply(
            400,
            error_body("no_webhook_target", ("callback_url", "no callback_url and no endpoint")),
        )
    )
    with pytest.raises(BadRequest) as bad:
        client.redeliver("fc_1")
    assert (bad.value.status_code, bad.value.error) == (400, "no_webhook_target")
    assert bad.value.error_details[0].field == "callback_url"

    api.script(reply(404, error_body("not_found", ("id", "no call fc_x"))))
    with pytest.raises(NotFound):
        client.redeliver("fc_x")


# Retries: the PUT is repeatable; the two POSTs are not, once the API may have acted


def test_set_webhook_endpoint_is_retried_after_a_read_timeout_and_a_gateway_error(
    client: Any, api: FakeApi
) -> None:
    api.script(
        httpx.ReadTimeout("read timed out"),
        reply(502, error_body("bad_gateway")),
        reply(200, endpoint_json()),
    )

    assert client.set_webhook_endpoint("https://example.test/hooks").enabled

    assert [r.method for r in api.requests] == ["PUT", "PUT", "PUT"]
    assert api.bodies() == [{"url": "https://example.test/hooks"}] * 3


@pytest.mark.parametrize("method", ["rotate_webhook_secret", "redeliver"])
def test_the_posts_are_not_retried_after_they_may_have_been_acted_on(
    make_client: MakeClient, api: FakeApi, method: str
) -> None:
    client = make_client()
    args = ("fc_1",) if method == "redeliver" else ()
    success = reply(202) if args else reply(200, endpoint_json(secret=SECRET))

    api.script(httpx.ReadTimeout("read timed out"), success)
    with pytest.raises(APIConnectionError):
        getattr(client, method)(*args)
    assert len(api.requests) == 1

    api.script(reply(502, error_body("bad_gateway")), success)
    with pytest.raises(ServerError):
        getattr(client, method)(*args)
    assert len(api.requests) == 2

    # ...but they are after a 503 (the API did nothing) or a refused connection
    api.script(
        reply(503, error_body("unavailable"), {"Retry-After": "1"}),
        httpx.ConnectError("connection refused"),
        success,
    )
    getattr(client, method)(*args)
    assert len(api.requests) == 5
    assert api.time.sleeps[0] == 1.0
