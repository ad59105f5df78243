"""Delivering webhook events: signed per Standard Webhooks, retried on the schedule, each
attempt sent where the tenant's endpoint is then, a 410 from it disabling it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy import Engine
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook

from models.broker import NO_TENANTS
from models.calls.states import CallStatus
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault, generate_encryption_key
from models.db.engine import session_scope
from models.db.tables import (
    ConnectedAccount,
    FunctionCall,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.webhooks.due import DeliveriesDue, one_tenant
from models.webhooks.outbox import enqueue_account_event, enqueue_deliveries
from models.webhooks.signing import message_id, new_secret, signing_secrets, store_secrets
from tests.worker.factories import NOW, make_call
from worker.net.egress import EgressPolicy
from worker.net.transport import make_webhook_client
from worker.webhooks.deliveries import WebhookRuntime, deliver, lease_for
from worker.webhooks.events import NO_ENDPOINT
from worker.webhooks.puller import Puller
from worker.webhooks.sender import InlinePoster

HOOK = "https://hooks.example.com/in"
SCHEDULE = [0.0, 5.0, 300.0]


class Receiver:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response] = []
        # What happens elsewhere while each request is on its way (a tenant's PUT, say).
        self.meanwhile: list[Callable[[], object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.meanwhile:
            self.meanwhile.pop(0)()
        return self.answers.pop(0) if self.answers else httpx.Response(204)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


PUBLISHED: list[tuple[list[str], float]] = []
# ... and the tenant of each, as the publisher was told
PUBLISHED_TENANTS: dict[str, str] = {}


class PublishedDeliveries:
    """Records the deliveries published to come back, with their countdowns."""

    def publish_calls(
        self,
        call_ids: Sequence[str],
        queue: str,
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
        first: bool = False,
    ) -> bool:
        raise AssertionError("webhook deliveries never publish calls")

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool:
        PUBLISHED.append((list(delivery_ids), countdown_s))
        PUBLISHED_TENANTS.update(tenant_of)
        return True

    def top_up_bulk(self) -> int:
        return 0


@pytest.fixture
def rt(engine: Engine, vault: Vault, receiver: Receiver) -> WebhookRuntime:
    PUBLISHED.clear()
    PUBLISHED_TENANTS.clear()
    return WebhookRuntime(
        engine=engine,
        vault=vault,
        poster=InlinePoster(receiver.client, timeout_s=5.0),
        schedule_s=SCHEDULE,
        clock=lambda: NOW,
        publisher=PublishedDeliveries(),
        lease_s=lease_for(5.0),
    )


def _add_endpoint(engine: Engine, vault: Vault, tenant_id: str) -> str:
    """An endpoint at HOOK for `tenant_id`, its secret stored under `vault`: the secret."""
    value = new_secret()
    with session_scope(engine) as session:
        session.add(
            WebhookEndpoint(
                tenant_id=tenant_id,
                url=HOOK,
                secrets_enc=store_secrets(vault, value, tenant_id=tenant_id),
            )
        )
    return value


@pytest.fixture
def secret(engine: Engine, vault: Vault, tenant: Tenant) -> str:
    return _add_endpoint(engine, vault, tenant.id)


def _finished_call(engine: Engine, account: ConnectedAccount) -> str:
    call = make_call(
        engine,
        account,
        status=CallStatus.COMPLETED,
        network_code="200",
        output={"ok": True},
    )
    with engine.begin() as conn:
        assert enqueue_deliveries(conn, [call.id], NOW) == [message_id(call.id)]
    return call.id


def _at(rt: WebhookRuntime, seconds: float) -> WebhookRuntime:
    """The same runtime, its clock `seconds` later."""
    return replace(rt, clock=lambda: NOW + timedelta(seconds=seconds))


def _delivery(engine: Engine, delivery_id: str) -> WebhookDelivery:
    with Session(engine) as session:
        found = session.get(WebhookDelivery, delivery_id)
        assert found is not None
        return found


def _attempts(engine: Engine, msg: str) -> list[WebhookAttempt]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == msg)
                .order_by(WebhookAttempt.number)  # type: ignore[arg-type]
            ).all()
        )


def _endpoint(engine: Engine, tenant_id: str) -> WebhookEndpoint:
    with Session(engine) as session:
        found = session.get(WebhookEndpoint, tenant_id)
        assert found is not None
        return found


def _endpoint_is(engine: Engine, tenant_id: str, **values: object) -> None:
    """Change the tenant's endpoint as a PUT /webhook-endpoint (or a 410) would have."""
    table = WebhookEndpoint.__table__
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.tenant_id == tenant_id).values(**values))


def _with_the_real_client(rt: WebhookRuntime) -> WebhookRuntime:
    """The same runtime, sending with the real webhook client, private networks not
    allowed."""
    policy = EgressPolicy(setting="PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS")
    return replace(
        rt,
        poster=InlinePoster(
            lambda: make_webhook_client(policy, max_connections=4, timeout_s=5.0), 5.0
        ),
    )


def test_an_event_is_signed_so_that_standardwebhooks_verifies_it(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    # Given a finished call and the tenant's endpoint
    call_id = _finished_call(engine, account)
    # When its event is delivered
    assert deliver([message_id(call_id)], rt) == {message_id(call_id): "succeeded"}
    # Then the receiver got it once, and the independent implementation verifies it
    [request] = receiver.requests
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload["type"] == "function_call.completed"
    assert payload["data"]["id"] == call_id
    assert payload["data"]["network_code"] == "200"
    assert request.headers["webhook-id"] == message_id(call_id)
    assert _delivery(engine, message_id(call_id)).status == "succeeded"


def test_a_failed_attempt_is_retried_on_the_schedule_with_the_same_id(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    call_id = _finished_call(engine, account)
    msg = message_id(call_id)
    receiver.answers = [httpx.Response(500), httpx.Response(503)]
    # First attempt fails: the next is 5 s later, published with a countdown
    assert deliver([msg], rt) == {msg: "pending"}
    pending = _delivery(engine, msg)
    assert pending.next_attempt_at == NOW + timedelta(seconds=5)
    assert [([msg], 5.0)] == PUBLISHED
    # A delivery not yet due is not attempted early
    assert deliver([msg], rt) == {}
    # Second attempt, when due, fails again: the next is 300 s later, left to the sweeper
    later = _at(rt, 5)
    assert deliver([msg], later) == {msg: "pending"}
    assert len(PUBLISHED) == 1
    # Third succeeds; the receiver saw one id throughout
    last = _at(rt, 305)
    assert deliver([msg], last) == {msg: "succeeded"}
    assert {r.headers["webhook-id"] for r in receiver.requests} == {msg}
    with Session(engine) as session:
        attempts = session.exec(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == msg)
        ).all()
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 503), (3, 204)]
    assert attempts[0].decision == "answered 500; retry in 5 s"


def test_the_last_failure_ends_the_delivery(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    call_id = _finished_call(engine, account)
    msg = message_id(call_id)
    receiver.answers = [httpx.Response(500)] * 4
    for seconds in (0, 5, 305):
        at = WebhookRuntime(
            **{**rt.__dict__, "clock": lambda s=seconds: NOW + timedelta(seconds=s)}
        )
        deliver([msg], at)
    assert _delivery(engine, msg).status == "failed"


def test_410_disables_the_endpoint(
    rt: WebhookRuntime,
    receiver: Receiver,
    engine: Engine,
    account: ConnectedAccount,
    secret: str,
    tenant: Tenant,
) -> None:
    call_id = _finished_call(engine, account)
    receiver.answers = [httpx.Response(410)]
    assert deliver([message_id(call_id)], rt) == {message_id(call_id): "failed"}
    with Session(engine) as session:
        endpoint = session.get(WebhookEndpoint, tenant.id)
        assert endpoint is not None
        assert endpoint.disabled_at is not None
    # And later events have nowhere to go until the endpoint is set again
    other = make_call(engine, account, status=CallStatus.FAILED)
    with engine.begin() as conn:
        assert enqueue_deliveries(conn, [other.id], NOW) == []


def test_a_callback_to_a_private_address_is_refused(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    call = make_call(
        engine,
        account,
        status=CallStatus.COMPLETED,
        callback_url="http://127.0.0.1:9/hook",
    )
    with engine.begin() as conn:
        [msg] = enqueue_deliveries(conn, [call.id], NOW)
    # When delivered by the real webhook client, private networks not allowed
    assert deliver([msg], _with_the_real_client(rt)) == {msg: "pending"}
    # Then nothing was sent, and the attempt says why and what would allow it
    assert receiver.requests == []
    with Session(engine) as session:
        [attempt] = session.exec(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == msg)
        ).all()
    assert attempt.error is not None
    assert attempt.error.startswith("destination_forbidden: 127.0.0.1 is not a public address")
    assert "PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in attempt.error


# --- an endpoint's events go where the endpoint is when each attempt is made --------------------

NEW_HOOK = "https://new.example.com/hook"
CALLBACK = "https://caller.example.com/own"


def test_retries_after_the_endpoint_moved_go_to_its_new_url_signed_with_its_secret_now(
    rt: WebhookRuntime,
    receiver: Receiver,
    engine: Engine,
    vault: Vault,
    account: ConnectedAccount,
    secret: str,
) -> None:
    # Given an event for the endpoint and one for a call's own callback_url, whose first
    # attempts failed
    msg = message_id(_finished_call(engine, account))
    own = make_call(engine, account, status=CallStatus.COMPLETED, callback_url=CALLBACK)
    with engine.begin() as conn:
        [own_msg] = enqueue_deliveries(conn, [own.id], NOW)
    receiver.answers = [httpx.Response(500), httpx.Response(500)]
    assert deliver([msg, own_msg], rt) == {msg: "pending", own_msg: "pending"}
    # When the tenant moves its endpoint to a new URL with a new secret, and the retries
    # are due
    fresh = new_secret()
    _endpoint_is(
        engine,
        account.tenant_id,
        url=NEW_HOOK,
        secrets_enc=store_secrets(vault, fresh, tenant_id=account.tenant_id),
    )
    assert deliver([msg, own_msg], _at(rt, 5)) == {msg: "succeeded", own_msg: "succeeded"}
    # Then the endpoint's event went to its new URL, signed with its secret now, while the
    # call's own event kept its callback_url
    assert [str(r.url) for r in receiver.requests] == [HOOK, CALLBACK, NEW_HOOK, CALLBACK]
    retried = receiver.requests[2]
    assert Webhook(fresh).verify(retried.content, dict(retried.headers))["type"] == (
        "function_call.completed"
    )
    assert (_delivery(engine, msg).url, _delivery(engine, own_msg).url) == (NEW_HOOK, CALLBACK)
    # and each attempt keeps the URL it went to
    assert [a.url for a in _attempts(engine, msg)] == [HOOK, NEW_HOOK]
    assert [a.url for a in _attempts(engine, own_msg)] == [CALLBACK, CALLBACK]


def test_a_410_from_a_url_the_tenant_replaced_never_disables_its_new_endpoint(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    # Given an event on its way to the endpoint's URL, which the tenant replaces while the
    # attempt is in flight, and which answers 410 Gone
    msg = message_id(_finished_call(engine, account))
    receiver.meanwhile = [lambda: _endpoint_is(engine, account.tenant_id, url=NEW_HOOK)]
    receiver.answers = [httpx.Response(410)]
    # When it is delivered
    assert deliver([msg], rt) == {msg: "pending"}
    # Then the new endpoint stays enabled, and the event is retried there
    endpoint = _endpoint(engine, account.tenant_id)
    assert (endpoint.url, endpoint.disabled_at) == (NEW_HOOK, None)
    [attempt] = _attempts(engine, msg)
    assert attempt.status_code == 410
    assert attempt.decision == "answered 410 from a URL the endpoint no longer has; retry in 5 s"
    assert deliver([msg], _at(rt, 5)) == {msg: "succeeded"}
    assert [str(r.url) for r in receiver.requests] == [HOOK, NEW_HOOK]


@pytest.mark.parametrize(
    "change",
    [{"url": None}, {"disabled_at": NOW, "disabled_reason": "the endpoint answered 410 Gone"}],
)
def test_with_the_endpoint_cleared_or_disabled_a_retry_sends_nothing_and_ends(
    rt: WebhookRuntime,
    receiver: Receiver,
    engine: Engine,
    account: ConnectedAccount,
    secret: str,
    change: dict[str, object],
) -> None:
    # Given an event for the endpoint whose first attempt failed
    msg = message_id(_finished_call(engine, account))
    receiver.answers = [httpx.Response(500)]
    assert deliver([msg], rt) == {msg: "pending"}
    # When the tenant clears its endpoint's URL (or the endpoint is disabled), and the
    # retry is due
    _endpoint_is(engine, account.tenant_id, **change)
    assert deliver([msg], _at(rt, 5)) == {msg: "failed"}
    # Then nothing more was sent; the attempt says why, and nothing follows it
    assert [str(r.url) for r in receiver.requests] == [HOOK]
    attempts = _attempts(engine, msg)
    assert [(a.number, a.status_code, a.error) for a in attempts] == [
        (1, 500, None),
        (2, None, NO_ENDPOINT),
    ]
    assert attempts[1].decision == f"{NO_ENDPOINT}; not retried"
    assert [a.url for a in attempts] == [HOOK, None]
    assert _delivery(engine, msg).next_attempt_at is None
    assert [([msg], 5.0)] == PUBLISHED


def test_the_egress_policy_applies_to_the_endpoints_url_now(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    # Given an event queued for the endpoint at one private address, the endpoint then
    # moved to another
    _endpoint_is(engine, account.tenant_id, url="http://127.0.0.1:9/old")
    msg = message_id(_finished_call(engine, account))
    _endpoint_is(engine, account.tenant_id, url="http://10.1.2.3:9/new")
    # When delivered by the real webhook client, private networks not allowed
    assert deliver([msg], _with_the_real_client(rt)) == {msg: "pending"}
    # Then nothing was sent, and the refusal is of the endpoint's URL now
    assert receiver.requests == []
    [attempt] = _attempts(engine, msg)
    assert attempt.error is not None
    assert attempt.error.startswith("destination_forbidden: 10.1.2.3 is not a public address")


# --- deliveries that cannot be attempted, one attempt at a time -------------------------------


@pytest.mark.parametrize("stored_on", ["callback_url", "endpoint"])
def test_a_url_the_worker_cannot_send_to_ends_the_delivery_at_once(
    rt: WebhookRuntime,
    receiver: Receiver,
    engine: Engine,
    account: ConnectedAccount,
    secret: str,
    stored_on: str,
) -> None:
    # Given a delivery whose URL, stored as the call's callback_url or as the tenant's
    # endpoint, is not a URL the worker can send to
    bad = "http://[::1"
    if stored_on == "callback_url":
        call = make_call(engine, account, status=CallStatus.COMPLETED, callback_url=bad)
        with engine.begin() as conn:
            [msg] = enqueue_deliveries(conn, [call.id], NOW)
    else:
        msg = message_id(_finished_call(engine, account))
        _endpoint_is(engine, account.tenant_id, url=bad)
    # When delivered / Then it failed once, saying why, and is not retried
    assert deliver([msg], rt) == {msg: "failed"}
    assert receiver.requests == []
    [attempt] = _attempts(engine, msg)
    assert attempt.error is not None
    assert attempt.error.startswith("the URL is not a valid URL")
    assert attempt.decision.endswith("not retried")
    assert PUBLISHED == []


def test_a_delivery_whose_call_was_purged_ends_instead_of_looping(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    call_id = _finished_call(engine, account)
    msg = message_id(call_id)
    with engine.begin() as conn:
        conn.execute(FunctionCall.__table__.delete().where(FunctionCall.__table__.c.id == call_id))
    assert deliver([msg], rt) == {msg: "failed"}
    [attempt] = _attempts(engine, msg)
    assert attempt.error == "the call no longer exists (deleted by retention)"


def test_an_unreadable_signing_secret_ends_the_delivery(
    rt: WebhookRuntime,
    receiver: Receiver,
    engine: Engine,
    account: ConnectedAccount,
    tenant: Tenant,
) -> None:
    # Given the tenant's secrets written under a key this worker does not hold
    _add_endpoint(engine, Vault([generate_encryption_key()]), tenant.id)
    call_id = _finished_call(engine, account)
    msg = message_id(call_id)
    # When delivered / Then nothing is sent unsigned; the delivery says why and ends
    assert deliver([msg], rt) == {msg: "failed"}
    assert receiver.requests == []
    [attempt] = _attempts(engine, msg)
    assert attempt.error is not None
    assert attempt.error.startswith("the signing secret cannot be read")


def test_a_delivery_in_flight_cannot_be_claimed_again(
    rt: WebhookRuntime, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    # Given a poster that holds its attempts (as the event loop does while one is in flight)
    held: list[object] = []

    class Holding:
        def room(self, tenant_id: str) -> int:
            return 10

        def post(self, delivery_id: str, tenant_id: str, prepare: object, done: object) -> None:
            held.append(delivery_id)

    call_id = _finished_call(engine, account)
    msg = message_id(call_id)
    holding = replace(rt, poster=Holding())
    # When the same delivery is handed over twice
    assert deliver([msg], holding) == {msg: "delivering"}
    assert deliver([msg], holding) == {}
    # Then only one attempt started
    assert len(held) == 1


def test_a_full_sender_leaves_deliveries_waiting_on_their_tenants_list(
    rt: WebhookRuntime, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    class Full:
        def room(self, tenant_id: str) -> int:
            return 0

        def post(self, delivery_id: str, tenant_id: str, prepare: object, done: object) -> None:
            raise AssertionError("nothing is posted to a full sender")

    msg = message_id(_finished_call(engine, account))
    published_at = _delivery(engine, msg).published_at
    # When a delivery comes to a sender with no room for its tenant
    assert deliver([msg], replace(_at(rt, 400), poster=Full())) == {}
    # Then it is published due now, with its tenant: onto that tenant's list, to be taken
    # when a sender has room (no countdown, no message going round again)
    assert [([msg], 0.0)] == PUBLISHED
    assert {msg: account.tenant_id} == PUBLISHED_TENANTS
    # ... unclaimed, and not written: the sweeper leaves a waiting tenant's deliveries be
    waiting = _delivery(engine, msg)
    assert (waiting.status, waiting.attempt_count) == ("pending", 0)
    assert waiting.published_at == published_at


def test_a_delivery_whose_worker_keeps_dying_ends_after_its_last_attempt(
    rt: WebhookRuntime, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    from tests.worker.factories import make_runtime
    from worker.webhooks.recovery import sweep_deliveries

    # Given two deliveries claimed by workers that died: one with attempts left, one without
    left, spent = (message_id(_finished_call(engine, account)) for _ in "ab")
    with engine.begin() as conn:
        table = WebhookDelivery.__table__
        for msg, count in ((left, 1), (spent, len(SCHEDULE))):
            conn.execute(
                table.update()
                .where(table.c.id == msg)
                .values(
                    status="delivering",
                    attempt_count=count,
                    lease_expires_at=NOW - timedelta(seconds=1),
                )
            )
    # When the sweeper runs
    calls = make_runtime(
        engine, Catalog({}), rt.vault, httpx.AsyncClient, max_response_bytes=1000, now=NOW
    )
    calls = replace(calls, rules=replace(calls.rules, webhook_attempts=len(SCHEDULE)))
    sweep_deliveries(calls, NOW, timedelta(seconds=300), everything=False, limit=500)
    calls.sender.close()
    # Then the one with attempts left is taken back, the other ends
    assert _delivery(engine, left).status == "pending"
    assert _delivery(engine, spent).status == "failed"


def test_an_event_too_large_for_a_receiver_goes_without_the_output(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    # Given a call whose output is 2 MiB of text
    call = make_call(engine, account, status=CallStatus.COMPLETED, network_code="200")
    with engine.begin() as conn:
        conn.execute(
            FunctionCall.__table__.update()
            .where(FunctionCall.__table__.c.id == call.id)
            .values(output="x" * (2 * 1024 * 1024))
        )
        [msg] = enqueue_deliveries(conn, [call.id], NOW)
    # When delivered / Then the event is signed and sent without the output, saying so
    assert deliver([msg], rt) == {msg: "succeeded"}
    [request] = receiver.requests
    assert len(request.content) < 1024 * 1024
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload["data"]["output"] is None
    assert payload["data"]["output_omitted"] is True
    assert payload["data"]["network_code"] == "200"


def test_deliveries_prepared_side_by_side_share_the_secret_the_first_one_made(
    engine: Engine, vault: Vault, tenant: Tenant
) -> None:
    import worker.webhooks.events as events

    # Given a delivery of a tenant that found no webhook endpoint when it read what it
    # sends, and another delivery of the tenant that made its secret since
    made = store_secrets(vault, new_secret(), tenant_id=tenant.id, shown=False)
    with engine.begin() as conn:
        conn.execute(
            WebhookEndpoint.__table__.insert().values(
                tenant_id=tenant.id, url=None, secrets_enc=made, created_at=NOW, updated_at=NOW
            )
        )
    # When this delivery's secrets are made
    got = events._secrets(engine, vault, lambda: NOW, tenant.id, None)
    # Then it signs with the secret the other one made, and the tenant has one endpoint
    assert got == signing_secrets(vault, made, time.time(), tenant_id=tenant.id)
    with Session(engine) as session:
        rows = session.exec(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant.id))
        assert len(list(rows)) == 1


def test_connection_created_is_signed_and_shows_the_account_without_its_credentials(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    # Given an account an end user connected on a connect page, its event written with it
    with engine.begin() as conn:
        [event_id] = enqueue_account_event(conn, account, NOW)
    assert event_id == message_id(account.id)
    # When it is delivered
    assert deliver([event_id], rt) == {event_id: "succeeded"}
    # Then the receiver verifies it, and it names the account but holds no credential
    [request] = receiver.requests
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload["type"] == "connection.created"
    assert payload["data"]["id"] == account.id
    assert (payload["data"]["app"], payload["data"]["user_id"]) == (account.app, account.user_id)
    assert payload["data"]["status"] == "active"
    assert "credentials" not in request.content.decode()
    assert account.credentials_enc not in request.content.decode()


def test_an_account_event_needs_an_endpoint(engine: Engine, account: ConnectedAccount) -> None:
    with engine.begin() as conn:
        assert enqueue_account_event(conn, account, NOW) == []


def _tenant_with_an_endpoint(engine: Engine, vault: Vault, name: str) -> ConnectedAccount:
    """A new tenant with a webhook endpoint: an account of it."""
    from models.accounts.tenants import create_tenant
    from tests.worker.factories import make_account

    tenant, _ = create_tenant(engine, name)
    _add_endpoint(engine, vault, tenant.id)
    return make_account(engine, tenant, vault)


def test_one_tenants_silent_receiver_holds_a_quarter_of_the_sender_at_most(
    rt: WebhookRuntime, engine: Engine, vault: Vault
) -> None:
    # Given a sender of 2 slots (16 pending, 4 of them one tenant's), and a tenant whose
    # receiver does not answer until told to
    import asyncio

    from tests.worker.webhook_poster import loop_poster

    release = asyncio.Event()
    answered: list[str] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        msg = request.headers["webhook-id"]
        if msg in hog:
            await release.wait()
        answered.append(msg)
        return httpx.Response(204)

    hogs_account = _tenant_with_an_endpoint(engine, vault, "hog")
    hog = [message_id(_finished_call(engine, hogs_account)) for _ in range(6)]
    other = message_id(_finished_call(engine, _tenant_with_an_endpoint(engine, vault, "other")))
    with loop_poster(receiver, concurrency=2) as (poster, loop):
        sender = replace(rt, poster=poster)
        # When the hog's six deliveries are handed over, then another tenant's
        hog_claimed = deliver(hog, sender)
        other_claimed = deliver([other], sender)
        # Then four of the hog's are taken, the other two wait on its list unclaimed ...
        assert sorted(hog_claimed) == sorted(hog[:4])
        assert [(hog[4:], 0.0)] == PUBLISHED
        assert {_delivery(engine, msg).status for msg in hog[4:]} == {"pending"}
        # ... and the other tenant's is taken, and sent once the hog's first round ends
        assert other_claimed == {other: "delivering"}
        loop.call_soon_threadsafe(release.set)
        assert poster.drain(10)
        assert sorted(answered) == sorted([*hog[:4], other])


def test_the_puller_takes_a_tenants_burst_as_its_receiver_answers_and_never_holds_another_back(
    rt: WebhookRuntime, engine: Engine, vault: Vault, redis_client: redis.Redis
) -> None:
    # Given a sender of 2 slots (16 pending, 4 of them one tenant's), a tenant with ten
    # events due whose receiver does not answer until told to, and another tenant's event
    # after them
    import asyncio

    from tests.worker.test_budget import wait_until
    from tests.worker.webhook_poster import loop_poster

    release = asyncio.Event()
    answered: list[str] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        msg = request.headers["webhook-id"]
        if msg in burst:
            await release.wait()
        answered.append(msg)
        return httpx.Response(204)

    bursting = _tenant_with_an_endpoint(engine, vault, "burst")
    burst = [message_id(_finished_call(engine, bursting)) for _ in range(10)]
    others = _tenant_with_an_endpoint(engine, vault, "other")
    other = message_id(_finished_call(engine, others))
    due = DeliveriesDue(redis_client)
    due.push(burst, one_tenant(burst, bursting.tenant_id))
    due.push([other], {other: others.tenant_id})
    with loop_poster(receiver, concurrency=2) as (poster, loop):
        sender = replace(rt, poster=poster)
        puller = Puller(due, poster, lambda ids, tenant_of: deliver(ids, sender, tenant_of))
        puller.start()
        try:
            # When the puller runs: the burst's first four are handed over (two hang, two
            # wait for a slot), and the other tenant's event is sent, past the burst's six
            # left, which wait on their list, unclaimed
            def statuses() -> list[str]:
                return sorted(_delivery(engine, msg).status for msg in burst)

            wait_until(lambda: statuses() == [*["delivering"] * 4, *["pending"] * 6])
            wait_until(lambda: other in answered)
            assert due.depth() == 6
            # Then, as the receiver answers, the whole burst is taken and sent
            loop.call_soon_threadsafe(release.set)
            wait_until(lambda: len(answered) == 11)
            assert poster.drain(10)
        finally:
            puller.stop(5)
    assert sorted(answered) == sorted([*burst, other])
    assert {_delivery(engine, msg).status for msg in burst} == {"succeeded"}
    assert due.depth() == 0


def test_the_puller_sends_deliveries_published_without_their_tenant(
    rt: WebhookRuntime,
    engine: Engine,
    account: ConnectedAccount,
    secret: str,
    receiver: Receiver,
    redis_client: redis.Redis,
) -> None:
    from tests.worker.test_budget import wait_until

    msgs = [message_id(_finished_call(engine, account)) for _ in range(3)]
    due = DeliveriesDue(redis_client)
    due.push(msgs, {})
    puller = Puller(due, rt.poster, lambda ids, tenant_of: deliver(ids, rt, tenant_of))
    puller.start()
    try:
        wait_until(lambda: due.depth() == 0)
    finally:
        puller.stop(5)
    assert {_delivery(engine, msg).status for msg in msgs} == {"succeeded"}
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(msgs)


def test_the_sweeper_leaves_a_waiting_tenants_deliveries_on_its_list_for_an_hour(
    rt: WebhookRuntime,
    engine: Engine,
    vault: Vault,
    account: ConnectedAccount,
    secret: str,
    redis_client: redis.Redis,
) -> None:
    from tests.worker.factories import RecordingPublisher, make_runtime
    from worker.webhooks.recovery import WAITING_LIMIT_S, sweep_deliveries

    # Given two tenants' deliveries published and never taken, one of the tenants with
    # deliveries waiting on its list (as after a take whose process died before its claim)
    other = _tenant_with_an_endpoint(engine, vault, "other")
    waiting, lost = (
        message_id(_finished_call(engine, account)),
        message_id(_finished_call(engine, other)),
    )
    due = DeliveriesDue(redis_client)
    due.push(["msg_still_waiting"], {"msg_still_waiting": account.tenant_id})
    publisher = RecordingPublisher()
    calls = make_runtime(
        engine, Catalog({}), rt.vault, httpx.AsyncClient, max_response_bytes=1000, now=NOW
    )
    calls = replace(calls, publisher=publisher, waiting_tenants=due.tenants)
    stale = timedelta(seconds=300)

    def published() -> list[str]:
        ours = [d for d in publisher.deliveries if d in (waiting, lost)]
        publisher.deliveries.clear()
        return sorted(ours)

    # When the sweeper runs past the republishing age
    sweep_deliveries(calls, NOW + timedelta(seconds=301), stale, everything=False, limit=500)
    # Then only the other tenant's is published again, with its tenant
    assert published() == [lost]
    assert publisher.tenant_of[lost] == other.tenant_id
    # ... and the waiting tenant's once it has not been published for an hour (the other's
    # comes again every PASSTHRU_REPUBLISH_AFTER_S meanwhile)
    hour = timedelta(seconds=WAITING_LIMIT_S)
    sweep_deliveries(calls, NOW + hour - timedelta(seconds=1), stale, everything=False, limit=500)
    assert waiting not in published()
    sweep_deliveries(calls, NOW + hour + timedelta(seconds=1), stale, everything=False, limit=500)
    assert waiting in published()
    calls.sender.close()


def test_the_sweeper_publishes_every_pending_delivery_when_redis_lost_its_data(
    rt: WebhookRuntime, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    from tests.worker.factories import RecordingPublisher, make_runtime
    from worker.webhooks.recovery import sweep_deliveries

    msg = message_id(_finished_call(engine, account))
    publisher = RecordingPublisher()
    calls = make_runtime(
        engine, Catalog({}), rt.vault, httpx.AsyncClient, max_response_bytes=1000, now=NOW
    )
    # (the tenant said to be waiting: the lists are gone with the rest)
    calls = replace(calls, publisher=publisher, waiting_tenants=lambda: {account.tenant_id})
    sweep_deliveries(
        calls, NOW + timedelta(seconds=1), timedelta(seconds=300), everything=True, limit=500
    )
    assert msg in publisher.deliveries
    calls.sender.close()


def test_the_puller_goes_on_after_a_failure_and_puts_back_what_it_took(
    rt: WebhookRuntime,
    engine: Engine,
    account: ConnectedAccount,
    secret: str,
    redis_client: redis.Redis,
) -> None:
    from tests.worker.test_budget import wait_until

    first, second = (message_id(_finished_call(engine, account)) for _ in "ab")
    due = DeliveriesDue(redis_client)
    due.push([first, second], one_tenant([first, second], account.tenant_id))
    failures = [RuntimeError("a bug")]

    def failing_once(ids: Sequence[str], tenant_of: Mapping[str, str] | None) -> object:
        if failures:
            raise failures.pop()
        return deliver(ids, rt, tenant_of)

    puller = Puller(due, rt.poster, failing_once)
    puller.start()
    try:
        # The one taken when it failed went back to the head of its list: both are sent
        wait_until(lambda: {_delivery(engine, m).status for m in (first, second)} == {"succeeded"})
    finally:
        assert puller.stop(5)
    assert due.depth() == 0


def test_a_delivery_the_broker_refused_is_published_at_the_next_sweep_waiting_tenant_or_not(
    rt: WebhookRuntime, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    from models.broker import NoPublisher
    from models.webhooks.publish import publish_deliveries_or_forget
    from tests.worker.factories import RecordingPublisher, make_runtime
    from worker.webhooks.recovery import sweep_deliveries

    msg = message_id(_finished_call(engine, account))
    # When the broker refuses it, it is marked unpublished ...
    refused = publish_deliveries_or_forget(engine, NoPublisher(), [msg], {msg: account.tenant_id})
    assert refused is False
    assert _delivery(engine, msg).published_at is None
    # ... so the next sweep publishes it, though its tenant has deliveries waiting
    publisher = RecordingPublisher()
    calls = make_runtime(
        engine, Catalog({}), rt.vault, httpx.AsyncClient, max_response_bytes=1000, now=NOW
    )
    calls = replace(calls, publisher=publisher, waiting_tenants=lambda: {account.tenant_id})
    sweep_deliveries(calls, NOW, timedelta(seconds=300), everything=False, limit=500)
    assert msg in publisher.deliveries
    calls.sender.close()


def test_the_sweeper_runs_with_seventy_thousand_tenants_waiting(
    rt: WebhookRuntime, engine: Engine, vault: Vault, account: ConnectedAccount, secret: str
) -> None:
    from tests.worker.factories import RecordingPublisher, make_runtime
    from worker.webhooks.recovery import sweep_deliveries

    # Given more tenants with deliveries waiting than Postgres takes bind parameters, this
    # delivery's tenant among them, and another tenant's delivery
    msg = message_id(_finished_call(engine, account))
    other = message_id(_finished_call(engine, _tenant_with_an_endpoint(engine, vault, "other")))
    waiting = {f"tn_waiting_{n:05}" for n in range(70_000)} | {account.tenant_id}
    publisher = RecordingPublisher()
    calls = make_runtime(
        engine, Catalog({}), rt.vault, httpx.AsyncClient, max_response_bytes=1000, now=NOW
    )
    calls = replace(calls, publisher=publisher, waiting_tenants=lambda: waiting)
    # When the sweeper runs past the republishing age: it runs, and leaves the waiting
    # tenant's delivery on its list while it publishes the other's again
    later = NOW + timedelta(seconds=301)
    sweep_deliveries(calls, later, timedelta(seconds=300), everything=False, limit=500)
    assert other in publisher.deliveries
    assert msg not in publisher.deliveries
    calls.sender.close()


class RefusingBroker(PublishedDeliveries):
    """A broker that is away: nothing published is taken."""

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool:
        super().publish_deliveries(delivery_ids, countdown_s, tenant_of)
        return False


def test_with_the_broker_away_a_retry_or_a_delivery_the_sender_had_no_room_for_is_unmarked(
    rt: WebhookRuntime, receiver: Receiver, engine: Engine, account: ConnectedAccount, secret: str
) -> None:
    class Full:
        def room(self, tenant_id: str) -> int:
            return 0

    away = replace(rt, publisher=RefusingBroker())
    # A retry due in 5 s whose countdown message the broker refused
    retried = message_id(_finished_call(engine, account))
    receiver.answers = [httpx.Response(500)]
    assert deliver([retried], away) == {retried: "pending"}
    assert [([retried], 5.0)] == PUBLISHED
    assert _delivery(engine, retried).published_at is None
    # A delivery the sender had no room for, which the broker refused onto its list
    waiting = message_id(_finished_call(engine, account))
    assert deliver([waiting], replace(away, poster=Full())) == {}
    assert _delivery(engine, waiting).published_at is None
    # ... so the sweeper publishes both when due, whatever waits on the tenant's list
