"""Webhook endpoint, secrets, deliveries and redelivery through the API."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.tables import WebhookDelivery, WebhookEndpoint
from models.errors import SecretOfAnotherRow
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.signing import message_id, new_secret, signing_secrets, store_secrets
from tests.api.conftest import CALL, Caller, PublishedIds, deliver_now, finish, submit
from tests.api.test_errors import assert_error_shape
from tests.worker.factories import NOW

HOOK = "https://hooks.example.com/passthru"


def test_the_secret_is_shown_once_and_rotates(caller: Caller) -> None:
    first = caller.client.put("/webhook-endpoint", json={"url": HOOK}, headers=caller.headers())
    assert first.status_code == 200, first.text
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    again = caller.client.put("/webhook-endpoint", json={"url": HOOK}, headers=caller.headers())
    assert "secret" not in again.json()
    shown = caller.client.get("/webhook-endpoint", headers=caller.headers()).json()
    assert shown["url"] == HOOK
    assert shown["enabled"] is True
    assert "secret" not in shown
    rotated = caller.client.post("/webhook-endpoint/rotate-secret", headers=caller.headers())
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != secret


def test_no_endpoint_yet_is_a_404_in_the_error_shape(caller: Caller) -> None:
    response = caller.client.get("/webhook-endpoint", headers=caller.headers())
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_a_bad_url_is_refused(caller: Caller) -> None:
    response = caller.client.put(
        "/webhook-endpoint", json={"url": "ftp://x"}, headers=caller.headers()
    )
    assert response.status_code == 400
    assert_error_shape(response.json())


def test_a_cancelled_call_sends_its_event_to_the_endpoint(
    caller: Caller, engine: Engine, published: PublishedIds
) -> None:
    # Given an endpoint and a queued call
    caller.client.put("/webhook-endpoint", json={"url": HOOK}, headers=caller.headers())
    caller.connect()
    call_id = submit(caller).json()["id"]
    # When it is cancelled
    assert caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    # Then its event was written and published, and the call lists it
    assert published.delivery_ids == [message_id(call_id)]
    listed = caller.client.get(
        f"/function-calls/{call_id}/deliveries", headers=caller.headers()
    ).json()["items"]
    assert [(d["id"], d["event"], d["url"], d["status"]) for d in listed] == [
        (message_id(call_id), "function_call.cancelled", HOOK, "pending")
    ]


def test_redelivery(caller: Caller, engine: Engine, published: PublishedIds) -> None:
    caller.connect()
    call_id = submit(caller, {**CALL, "callback_url": HOOK}).json()["id"]
    # A call still waiting has nothing to send
    early = caller.client.post(f"/function-calls/{call_id}/redeliver", headers=caller.headers())
    assert early.status_code == 409
    assert_error_shape(early.json(), "not_finished")
    # Once finished, its event goes (again) to its callback_url
    finish(engine, call_id, "200")
    sent = caller.client.post(f"/function-calls/{call_id}/redeliver", headers=caller.headers())
    assert sent.status_code == 202
    again = caller.client.post(f"/function-calls/{call_id}/redeliver", headers=caller.headers())
    assert again.status_code == 202
    assert published.delivery_ids == [message_id(call_id)] * 2
    with Session(engine) as session:
        [delivery] = session.exec(
            select(WebhookDelivery).where(WebhookDelivery.call_id == call_id)
        ).all()
    assert (delivery.url, delivery.to_endpoint, delivery.status) == (HOOK, False, "pending")


def test_a_redelivery_the_broker_refused_is_left_for_the_next_sweep(
    caller: Caller, engine: Engine, published: PublishedIds
) -> None:
    caller.connect()
    call_id = submit(caller, {**CALL, "callback_url": HOOK}).json()["id"]
    finish(engine, call_id, "200")
    published.refuse_deliveries = True
    path = f"/function-calls/{call_id}/redeliver"
    assert caller.client.post(path, headers=caller.headers()).status_code == 202
    # Published with its tenant, refused, and so marked unpublished: the sweeper's next run
    # publishes it, whatever waits on the tenant's list
    assert published.tenant_of[message_id(call_id)] == caller.tenant.id
    with Session(engine) as session:
        [delivery] = session.exec(
            select(WebhookDelivery).where(WebhookDelivery.call_id == call_id)
        ).all()
    assert (delivery.status, delivery.published_at) == ("pending", None)


def test_a_delivery_in_flight_is_not_redelivered(
    caller: Caller, engine: Engine, published: PublishedIds
) -> None:
    # Given a finished call whose event a worker is delivering right now
    caller.connect()
    call_id = submit(caller, {**CALL, "callback_url": HOOK}).json()["id"]
    finish(engine, call_id, "200")
    path = f"/function-calls/{call_id}/redeliver"
    assert caller.client.post(path, headers=caller.headers()).status_code == 202
    with session_scope(engine) as session:
        session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.call_id) == call_id)
            .values(status="delivering")
        )
    # When it is redelivered
    response = caller.client.post(path, headers=caller.headers())
    # Then it is a 409, and the delivery is left to its sender
    assert response.status_code == 409
    assert_error_shape(response.json(), "delivery_in_flight")
    assert published.delivery_ids == [message_id(call_id)]
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, message_id(call_id))
        assert delivery is not None
        assert delivery.status == "delivering"


OLD_HOOK = "https://old.example.com/hook"
NEW_HOOK = "https://new.example.com/hook"


def _queued_for_the_endpoint(caller: Caller, engine: Engine) -> str:
    """A call finished while the tenant's endpoint was at OLD_HOOK, its event queued there
    (as the worker that stored its result would have); its id."""
    put = caller.client.put("/webhook-endpoint", json={"url": OLD_HOOK}, headers=caller.headers())
    assert put.status_code == 200, put.text
    caller.connect()
    call_id: str = submit(caller).json()["id"]
    finish(engine, call_id, "200")
    with engine.begin() as conn:
        assert enqueue_deliveries(conn, [call_id], utcnow()) == [message_id(call_id)]
    return call_id


def test_a_redelivery_goes_to_the_endpoint_as_it_is_now_and_a_410_there_before_is_moot(
    caller: Caller, engine: Engine, vault: Vault, published: PublishedIds
) -> None:
    # Given a call's event queued for the endpoint at its old URL, then the endpoint moved
    call_id = _queued_for_the_endpoint(caller, engine)
    moved = caller.client.put("/webhook-endpoint", json={"url": NEW_HOOK}, headers=caller.headers())
    assert moved.status_code == 200, moved.text
    # When it is redelivered
    path = f"/function-calls/{call_id}"
    assert caller.client.post(f"{path}/redeliver", headers=caller.headers()).status_code == 202
    # Then it is aimed at the endpoint's new URL
    [listed] = caller.client.get(f"{path}/deliveries", headers=caller.headers()).json()["items"]
    assert (listed["url"], listed["status"]) == (NEW_HOOK, "pending")
    # and a worker sends it there alone: the old URL, which answers 410 Gone, gets nothing
    status, received = deliver_now(
        engine,
        vault,
        message_id(call_id),
        utcnow(),
        lambda request: httpx.Response(410 if request.url.host == "old.example.com" else 204),
    )
    assert status == "succeeded"
    assert [str(r.url) for r in received] == [NEW_HOOK]
    [listed] = caller.client.get(f"{path}/deliveries", headers=caller.headers()).json()["items"]
    assert [a["url"] for a in listed["attempts"]] == [NEW_HOOK]  # where the attempt went
    # and the endpoint stays enabled, so later events still go to it
    endpoint = caller.client.get("/webhook-endpoint", headers=caller.headers()).json()
    assert (endpoint["url"], endpoint["enabled"]) == (NEW_HOOK, True)


@pytest.mark.parametrize(
    "change",
    [{"url": None}, {"disabled_at": NOW, "disabled_reason": "the endpoint answered 410 Gone"}],
)
def test_redelivering_an_endpoints_event_without_an_enabled_endpoint_is_a_400(
    caller: Caller, engine: Engine, published: PublishedIds, change: dict[str, object]
) -> None:
    # Given a call's event queued for the endpoint, then the endpoint cleared (or disabled)
    call_id = _queued_for_the_endpoint(caller, engine)
    with session_scope(engine) as session:
        session.exec(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.tenant_id) == caller.tenant.id)
            .values(**change)
        )
    # When it is redelivered
    response = caller.client.post(f"/function-calls/{call_id}/redeliver", headers=caller.headers())
    # Then it is refused, saying what to do, and the delivery is left as it was
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_webhook_target")
    assert "PUT /webhook-endpoint" in response.text
    assert published.delivery_ids == []
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, message_id(call_id))
        assert delivery is not None
    assert (delivery.url, delivery.status) == (OLD_HOOK, "pending")


def test_redelivery_without_anywhere_to_send_is_a_400(caller: Caller, engine: Engine) -> None:
    caller.connect()
    call_id = submit(caller).json()["id"]
    finish(engine, call_id, None, CallStatus.FAILED)
    response = caller.client.post(f"/function-calls/{call_id}/redeliver", headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_webhook_target")


def test_a_secret_made_by_a_delivery_is_shown_on_the_first_put(
    caller: Caller, engine: Engine, vault: Vault
) -> None:
    # Given a secret a callback delivery made before the tenant ever asked for one
    made = new_secret()
    with session_scope(engine) as session:
        session.add(
            WebhookEndpoint(
                tenant_id=caller.tenant.id,
                secrets_enc=store_secrets(vault, made, tenant_id=caller.tenant.id, shown=False),
            )
        )
    # Then the first PUT shows it, and only the first
    first = caller.client.put("/webhook-endpoint", json={"url": HOOK}, headers=caller.headers())
    assert first.json()["secret"] == made
    again = caller.client.put("/webhook-endpoint", json={"url": HOOK}, headers=caller.headers())
    assert "secret" not in again.json()


def test_another_tenants_secrets_copied_onto_an_endpoint_are_refused(
    caller: Caller, make_caller: Callable[[], Caller], engine: Engine, vault: Vault
) -> None:
    # Given tenant A's secret, made by a delivery and not shown yet, and tenant B's endpoint
    # row given A's ciphertext (swapped in the database)
    a = make_caller()
    made = new_secret()
    a_secrets = store_secrets(vault, made, tenant_id=a.tenant.id, shown=False)
    with session_scope(engine) as session:
        session.add(WebhookEndpoint(tenant_id=a.tenant.id, secrets_enc=a_secrets))
        session.add(WebhookEndpoint(tenant_id=caller.tenant.id, secrets_enc=a_secrets))

    # When B sets its URL
    put = caller.client.put("/webhook-endpoint", json={"url": HOOK}, headers=caller.headers())
    # Then A's secret is not shown to B; B is told how to get a secret of its own
    assert made not in put.text
    assert put.status_code == 409
    assert_error_shape(put.json(), "webhook_secret_unreadable")
    assert "rotate-secret" in put.text
    # and nothing can sign B's deliveries with it
    with pytest.raises(SecretOfAnotherRow):
        signing_secrets(vault, a_secrets, time.time(), tenant_id=caller.tenant.id)

    # When B rotates its secret
    rotated = caller.client.post("/webhook-endpoint/rotate-secret", headers=caller.headers())
    # Then B gets a new one, and A's is not kept as B's previous secret
    assert rotated.status_code == 200, rotated.text
    with Session(engine) as session:
        stored = session.get(WebhookEndpoint, caller.tenant.id)
        assert stored is not None
    signing = signing_secrets(vault, stored.secrets_enc, time.time(), tenant_id=caller.tenant.id)
    assert signing == [rotated.json()["secret"]]
    # while A's own endpoint is untouched: its first PUT shows A its secret
    first = a.client.put("/webhook-endpoint", json={"url": HOOK}, headers=a.headers())
    assert first.json()["secret"] == made
