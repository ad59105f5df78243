"""The Python SDK (`passthru_client`) against the live stack: API, worker, Redis and the
stand-in Slack."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets

import pytest
from passthru_client import (
    AsyncPassthru,
    AuthenticationError,
    BadRequest,
    Call,
    Delivery,
    FunctionCall,
    NotFound,
    Passthru,
    WebhookEndpoint,
    WebhookVerificationError,
    verify_webhook,
)

from tests.e2e.conftest import WAIT_S, Caller, Stack, wait_until
from tests.e2e.upstream import SLACK_CONVERSATIONS, Reply

# `once` (SQLite pass only): its subject is the Python SDK; the queries it drives (log pages,
# batches, idempotency, deliveries) run on Postgres in tests/api, test_batch and test_webhooks.
pytestmark = pytest.mark.once

SLACK = "slack-passthrough-request"
LIST = {"method": "GET", "url": "conversations.list?limit=2"}


def test_sdk_round_trip(stack: Stack, caller: Caller) -> None:
    user = f"u-sdk-{secrets.token_hex(3)}"
    with Passthru(caller.api_key, stack.base_url, user_id=user) as pt:
        # Given a connected Slack account
        account = pt.connect_account("slack", {"access_token": "xoxb-sdk"})
        assert (account.app, account.user_id, account.status) == ("slack", user, "active")
        assert [a.id for a in pt.list_accounts(app="slack", user_id=user)] == [account.id]

        # When a call is invoked with a wait, it comes back finished
        call = pt.invoke_function(SLACK, LIST, wait=10)
        assert isinstance(call, FunctionCall)
        assert (call.status, call.network_code, call.done) == ("completed", "200", True)
        assert call.output == SLACK_CONVERSATIONS
        seen = stack.upstream.requests_to("/api/conversations.list")[-1]
        assert seen.headers["authorization"] == "Bearer xoxb-sdk"
        assert seen.query["limit"] == ["2"]
        full = pt.get_call(call.id)
        assert full.attempts is not None
        assert full.attempts[0].network_code == "200"
        assert full.connected_account_id == account.id

        # A batch: three good calls and a bad one, each answered on its own
        calls: list[Call | dict[str, object]] = [
            Call(SLACK, {"method": "GET", "url": f"conversations.list?n={i}"}) for i in range(3)
        ]
        calls.append({"function": SLACK, "params": {"method": "GET", "url": "https://x.test/"}})
        result = pt.batch(calls)
        assert [r.index for r in result.rejected] == [3]
        assert result.rejected[0].error == "invalid_params"
        assert len(result.ids) == 3
        finished = [pt.wait_for(call_id, timeout=WAIT_S) for call_id in result.ids]
        assert [(c.status, c.network_code, c.batch_id) for c in finished] == [
            ("completed", "200", result.batch_id)
        ] * 3
        # the log, page after page, holds exactly the batch's calls
        logged = [c.id for c in pt.iter_calls(batch_id=result.batch_id, page_size=2)]
        assert sorted(logged) == sorted(result.ids)
        progress = pt.get_batch(result.batch_id)
        assert progress.done
        assert progress.counts == {"completed": 3}

        # An invalid call raises BadRequest with the API's details
        with pytest.raises(BadRequest) as caught:
            pt.invoke_function(SLACK, {"method": "FETCH", "url": "https://evil.example.com/"})
        err = caught.value
        assert (err.status_code, err.error) == (400, "invalid_params")
        assert {d.field for d in err.error_details} == {"method", "url"}
        assert "evil.example.com" in str(err)

        with pytest.raises(NotFound):
            pt.get_call("fc_does_not_exist")

    with Passthru("pt_wrong", stack.base_url) as stranger, pytest.raises(AuthenticationError):
        stranger.list_functions()


def test_async_sdk_waits_for_an_upstream_error(stack: Stack, caller: Caller) -> None:
    user = f"u-sdk-async-{secrets.token_hex(3)}"
    stack.upstream.script(
        "GET", "/api/users.info", Reply(404, {"ok": False, "error": "user_not_found"})
    )

    async def main() -> FunctionCall:
        async with AsyncPassthru(caller.api_key, stack.base_url, user_id=user) as pt:
            await pt.connect_account("slack", {"access_token": "xoxb-async"})
            submitted = await pt.invoke_function(
                SLACK, {"method": "GET", "url": "users.info?user=U0"}, idempotency_key=user
            )
            again = await pt.invoke_function(
                SLACK, {"method": "GET", "url": "users.info?user=U0"}, idempotency_key=user
            )
            assert again.id == submitted.id
            return await pt.wait_for(submitted.id, timeout=WAIT_S)

    call = asyncio.run(main())
    assert (call.status, call.network_code, call.ok) == ("completed", "404", False)
    assert call.output == {"ok": False, "error": "user_not_found"}


def test_a_webhook_signed_by_the_server_verifies(stack: Stack, caller: Caller) -> None:
    # The stand-in upstream, on loopback, receives the callback too.
    path = f"/sdk-hook-{secrets.token_hex(3)}"
    callback_url = f"{stack.upstream.origin}{path}"
    stack.upstream.script("POST", path, Reply(204))
    user = f"u-sdk-hook-{secrets.token_hex(3)}"
    with Passthru(caller.api_key, stack.base_url, user_id=user) as pt:
        # A new tenant has no endpoint yet; making one shows its secret, once
        with pytest.raises(NotFound):
            pt.get_webhook_endpoint()
        endpoint = pt.set_webhook_endpoint(None)  # no default URL: each call names its own
        assert isinstance(endpoint, WebhookEndpoint)
        assert (endpoint.url, endpoint.enabled, endpoint.disabled_at) == (None, True, None)
        assert endpoint.updated_at is not None
        secret = endpoint.secret
        assert secret is not None
        assert secret.startswith("whsec_")
        assert pt.get_webhook_endpoint().secret is None
        assert pt.set_webhook_endpoint(None).secret is None

        pt.connect_account("slack", {"access_token": "xoxb-hook"})
        call = pt.invoke_function(SLACK, LIST, wait=10, callback_url=callback_url)
        assert call.status == "completed"

        wait_until(lambda: bool(stack.upstream.requests_to(path)), WAIT_S, "the webhook")
        seen = stack.upstream.requests_to(path)[0]
        event = verify_webhook(seen.body, seen.headers, secret)
        assert call.id in json.dumps(event)
        with pytest.raises(WebhookVerificationError):
            verify_webhook(seen.body + b" ", seen.headers, secret)
        other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        with pytest.raises(WebhookVerificationError):
            verify_webhook(seen.body, seen.headers, other)

        # The call's delivery, as the API records it
        [delivery] = pt.list_deliveries(call.id)
        assert isinstance(delivery, Delivery)
        assert delivery.id == seen.headers["webhook-id"]
        assert (delivery.event, delivery.url) == ("function_call.completed", callback_url)
        assert delivery.status in ("pending", "delivering", "succeeded")

        def delivered(attempts: int) -> bool:
            [d] = pt.list_deliveries(call.id)
            return d.status == "succeeded" and len(d.attempts) >= attempts

        wait_until(lambda: delivered(1), WAIT_S, "the delivery to be recorded")
        [delivery] = pt.list_deliveries(call.id)
        assert delivery.finished_at is not None
        assert delivery.attempts[0].status_code == 204

        # Redelivered: the same event, with the same webhook-id, signed by the same secret
        pt.redeliver(call.id)  # 202, no body
        wait_until(lambda: len(stack.upstream.requests_to(path)) >= 2, WAIT_S, "the redelivery")
        again = stack.upstream.requests_to(path)[1]
        assert again.headers["webhook-id"] == delivery.id
        assert verify_webhook(again.body, again.headers, secret)["data"]["id"] == call.id
        wait_until(lambda: delivered(2), WAIT_S, "the redelivery to be recorded")

        # A rotated secret is shown once; the old one still signs meanwhile
        rotated = pt.rotate_webhook_secret()
        assert rotated.secret is not None
        assert rotated.secret.startswith("whsec_")
        assert rotated.secret != secret
        pt.redeliver(call.id)
        wait_until(lambda: len(stack.upstream.requests_to(path)) >= 3, WAIT_S, "the redelivery")
        third = stack.upstream.requests_to(path)[2]
        for either in (rotated.secret, secret):
            assert verify_webhook(third.body, third.headers, either)["data"]["id"] == call.id
        wait_until(lambda: delivered(3), WAIT_S, "the redelivery to be recorded")

        # A call with no callback_url, while the endpoint has no URL, has nowhere to go
        quiet = pt.invoke_function(SLACK, LIST, wait=10)
        assert quiet.done
        assert pt.list_deliveries(quiet.id) == []
        with pytest.raises(BadRequest) as caught:
            pt.redeliver(quiet.id)
        assert caught.value.error == "no_webhook_target"
        with pytest.raises(NotFound):
            pt.list_deliveries("fc_does_not_exist")
