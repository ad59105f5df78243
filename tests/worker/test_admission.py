"""Rate limits inside the pipeline: calls wait for their slot without holding a thread, are
handed back when the slot is far, keep the slot they booked, and a 429 pauses their key."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from models.calls.states import CallStatus
from models.catalog.apps import Catalog, parse_catalog
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount, Tenant
from models.ratelimit.rules import parse_rate, pause_key
from models.ratelimit.store import UNLIMITED, MemoryLimiter
from tests.worker.factories import (
    NOW,
    RecordingPublisher,
    attempts,
    load,
    make_account,
    make_call,
    make_runtime,
)
from worker.calls.pipeline import execute_calls
from worker.net.sender import Sender
from worker.ratelimit.admission import COME_BACK_EARLY_S, STALE_AFTER_S
from worker.runtime import Runtime

APPS = parse_catalog(
    {
        "tenpersec": {
            "name": "Ten per second",
            "base_url": "https://ten.example/api",
            "allowed_hosts": ["ten.example"],
            "auth": {"type": "bearer"},
            "rate_limits": [{"scope": "account", "limit": 10, "period_s": 1}],
        },
        "tiered": {
            "name": "A slow method inside a faster account limit",
            "base_url": "https://tiered.example/api",
            "allowed_hosts": ["tiered.example"],
            "auth": {"type": "bearer"},
            "rate_limits": [
                {"scope": "account", "limit": 10, "period_s": 1},
                {"scope": "account", "limit": 1, "period_s": 10, "path": "^/api/slow"},
            ],
        },
        "slowpoke": {
            "name": "One per ten seconds",
            "base_url": "https://slow.example/api",
            "allowed_hosts": ["slow.example"],
            "auth": {"type": "bearer"},
            "rate_limits": [{"scope": "app", "limit": 1, "period_s": 10}],
        },
    },
    "test",
)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class Rig:
    engine: Engine
    limiter: MemoryLimiter
    runtime: Runtime
    sent_at: list[float]  # monotonic time of each request the upstream got
    answers: list[httpx.Response]
    published: RecordingPublisher = field(default_factory=RecordingPublisher)

    def run(self, ids: Sequence[str], now: datetime = NOW) -> dict[str, CallStatus]:
        self.clock_ms[0] = _ms(now)
        return execute_calls(ids, replace(self.runtime, clock=lambda: now))

    clock_ms: list[int] = field(default_factory=lambda: [_ms(NOW)])


@pytest.fixture
def rig(engine: Engine, vault: Vault) -> Iterator[Rig]:
    sent_at: list[float] = []
    answers: list[httpx.Response] = []

    def upstream(_: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        return answers.pop(0) if answers else httpx.Response(200, json={"ok": True})

    clock_ms = [_ms(NOW)]
    limiter = MemoryLimiter(clock=lambda: clock_ms[0])
    runtime = make_runtime(
        engine,
        Catalog(APPS),
        vault,
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
        max_response_bytes=10_000,
    )
    r = Rig(engine, limiter, replace(runtime, limiter=limiter), sent_at, answers)
    r.clock_ms = clock_ms
    r.runtime = replace(r.runtime, publisher=r.published)
    yield r
    runtime.sender.close()


def _account(engine: Engine, tenant: Tenant, vault: Vault, app: str) -> ConnectedAccount:
    return make_account(engine, tenant, vault, app=app, credentials={"api_key": "k"})


def test_calls_within_a_short_wait_go_spaced_in_the_event_loop(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given 5 calls to an account limited to 10 per second, in one message
    account = _account(engine, tenant, vault, "tenpersec")
    ids = [make_call(engine, account, url="https://ten.example/api/x").id for _ in range(5)]
    # When the message runs
    statuses = rig.run(ids)
    # Then all are sent within this one run
    assert statuses == dict.fromkeys(ids, CallStatus.COMPLETED)
    assert len(rig.sent_at) == 5
    # And each attempt says how long the limit held it back, and why
    waits = sorted((attempts(engine, i)[0].rate_wait_ms or 0) for i in ids)
    assert waits == [0, 100, 200, 300, 400]
    reasons = {attempts(engine, i)[0].rate_wait_reason for i in ids}
    assert reasons == {None, "tenpersec: 10 per 1 s per account"}


def test_a_far_slot_hands_the_call_back_and_keeps_the_slot(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given two calls to an app allowing one call per 10 s
    account = _account(engine, tenant, vault, "slowpoke")
    first, second = (make_call(engine, account, url="https://slow.example/api/x") for _ in "ab")
    # When they run in one message
    statuses = rig.run([first.id, second.id])
    # Then the first goes, and the second is handed back unsent: queued, no attempt used
    assert statuses == {first.id: CallStatus.COMPLETED}
    assert len(rig.sent_at) == 1
    parked = load(engine, second.id)
    assert parked.status is CallStatus.QUEUED
    assert parked.attempt_count == 0
    assert parked.started_at is None
    assert attempts(engine, second.id) == []
    slot = NOW + timedelta(seconds=10)
    assert parked.next_attempt_at == slot - timedelta(seconds=COME_BACK_EARLY_S)
    assert parked.rate_wait is not None
    assert datetime.fromisoformat(parked.rate_wait["slot_at"]) == slot
    # and it is published to come back just before its slot
    assert rig.published.calls == [([second.id], "passthru.interactive", 9)]

    # When it comes back at its time
    assert rig.run([second.id], now=slot - timedelta(seconds=0.5)) == {
        second.id: CallStatus.COMPLETED
    }
    # Then it went on the slot it had booked, without booking another
    [row] = attempts(engine, second.id)
    assert row.rate_wait_ms == 10_000
    assert row.rate_wait_reason == "slowpoke: 1 per 10 s"
    assert load(engine, second.id).rate_wait is None
    _, [tat] = rig.limiter.read(["passthru:rl:slowpoke:0:app"])
    assert tat == _ms(NOW) + 20_000  # two slots booked in all


@pytest.mark.parametrize(
    ("late_s", "books_again"), [(STALE_AFTER_S / 2, False), (STALE_AFTER_S + 2, True)]
)
def test_a_call_back_long_after_the_slot_it_kept_books_again(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault, late_s: float, books_again: bool
) -> None:
    # Given a call handed back with the slot 10 s away, the only one of its 10 s
    account = _account(engine, tenant, vault, "slowpoke")
    first, second = (make_call(engine, account, url="https://slow.example/api/x") for _ in "ab")
    rig.run([first.id, second.id])
    slot = NOW + timedelta(seconds=10)
    # When its message comes back after that slot (a busy worker, other tenants' turns)
    statuses = rig.run([second.id], now=slot + timedelta(seconds=late_s))
    _, [tat] = rig.limiter.read(["passthru:rl:slowpoke:0:app"])
    if not books_again:
        # Then, a moment late, it goes on the slot it kept
        assert statuses == {second.id: CallStatus.COMPLETED}
        assert tat == _ms(NOW) + 20_000
        return
    # Then, long after it, it does not go on a slot long past, beside the calls booked for
    # now: it books the next one (20 s after the first) and is handed back to wait for it
    assert statuses == {}
    parked = load(engine, second.id)
    assert parked.status is CallStatus.QUEUED
    assert parked.rate_wait is not None
    assert datetime.fromisoformat(parked.rate_wait["slot_at"]) == NOW + timedelta(seconds=20)
    assert tat == _ms(NOW) + 30_000  # three slots booked in all


def test_a_handed_back_call_is_due_when_its_message_comes_and_before_its_slot(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given one call that took the only slot of the next 10 s
    account = _account(engine, tenant, vault, "slowpoke")
    first, second = (make_call(engine, account, url="https://slow.example/api/x") for _ in "ab")
    rig.run([first.id])
    # When another runs 0.3 s later (its slot 9.7 s away, not a whole number of seconds)
    later = NOW + timedelta(seconds=0.3)
    assert rig.run([second.id], now=later) == {}
    # Then its message comes back a whole number of seconds later, rounded down: it is due
    # by then (a message that came before the call is due would find nothing to claim), and
    # at least COME_BACK_EARLY_S before its slot (a late return would send late and bunch
    # with the calls sent on time after it)
    [(ids, _, countdown)] = rig.published.calls
    assert ids == [second.id]
    assert countdown == 8
    due = load(engine, second.id).next_attempt_at
    assert due == later + timedelta(seconds=countdown)
    slot = NOW + timedelta(seconds=10)
    assert slot - due >= timedelta(seconds=COME_BACK_EARLY_S)
    # and from there it waits the rest for its own slot, in the loop
    assert rig.run([second.id], now=due) == {second.id: CallStatus.COMPLETED}
    assert attempts(engine, second.id)[0].rate_wait_ms == 9_700


def test_a_429_pauses_the_key_for_every_call(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an upstream that answers 429 with Retry-After: 3
    account = _account(engine, tenant, vault, "tenpersec")
    call = make_call(engine, account, url="https://ten.example/api/x")
    rig.answers.append(httpx.Response(429, headers={"Retry-After": "3"}))
    # When the call runs
    assert rig.run([call.id]) == {call.id: CallStatus.RETRYING}
    # Then the account's key is paused for 3 s
    key = pause_key(APPS["tenpersec"], account.id)
    _, [until] = rig.limiter.read([key])
    assert until == _ms(NOW) + 3_000
    # And another call of that account, half a second later, is handed back until the pause
    # ends (2.5 s away: longer than a wait inside the event loop)
    other = make_call(engine, account, url="https://ten.example/api/y")
    assert rig.run([other.id], now=NOW + timedelta(seconds=0.5)) == {}
    parked = load(engine, other.id)
    assert parked.status is CallStatus.QUEUED
    assert parked.rate_wait is not None
    assert parked.rate_wait["reason"] == "paused by the upstream"
    assert datetime.fromisoformat(parked.rate_wait["slot_at"]) == NOW + timedelta(seconds=3)


def test_a_pause_met_while_waiting_hands_the_call_back(
    engine: Engine, tenant: Tenant, vault: Vault, rig: Rig
) -> None:
    # Given a sender whose pause check says the key was paused for 4 s meanwhile
    async def paused(_: str) -> int:
        return 4_000

    sender = Sender(
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200))),
        rig.runtime.sender.policy,
        make_gate=lambda: paused,
    )
    runtime = replace(rig.runtime, sender=sender)
    account = _account(engine, tenant, vault, "tenpersec")
    ids = [make_call(engine, account, url="https://ten.example/api/x").id for _ in range(2)]
    try:
        # When both run: the first goes at once, the second waits 100 ms for its slot
        statuses = execute_calls(ids, replace(runtime, clock=lambda: NOW))
    finally:
        sender.close()
    # Then the second is not sent: it is handed back to come back after the pause
    assert statuses == {ids[0]: CallStatus.COMPLETED}
    parked = load(engine, ids[1])
    assert parked.status is CallStatus.QUEUED
    assert parked.next_attempt_at == NOW + timedelta(seconds=4)


def test_without_a_limiter_nothing_waits(
    engine: Engine, tenant: Tenant, vault: Vault, rig: Rig
) -> None:
    account = _account(engine, tenant, vault, "slowpoke")
    ids = [make_call(engine, account, url="https://slow.example/api/x").id for _ in range(3)]
    statuses = execute_calls(ids, replace(rig.runtime, limiter=UNLIMITED, clock=lambda: NOW))
    assert statuses == dict.fromkeys(ids, CallStatus.COMPLETED)


def test_the_tenant_cap_holds_back_calls_to_any_app(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an operator cap of one call per 10 s per tenant, and calls to two apps
    cap = parse_rate("1/10")
    ten = _account(engine, tenant, vault, "tenpersec")
    slow = _account(engine, tenant, vault, "slowpoke")
    first = make_call(engine, ten, url="https://ten.example/api/x")
    second = make_call(engine, slow, url="https://slow.example/api/x")
    # When both run
    statuses = execute_calls(
        [first.id, second.id],
        replace(rig.runtime, rules=replace(rig.runtime.rules, tenant_cap=cap)),
    )
    # Then the first goes and the second waits for the tenant's next slot, saying why
    assert statuses == {first.id: CallStatus.COMPLETED}
    parked = load(engine, second.id)
    assert parked.rate_wait is not None
    assert parked.rate_wait["reason"] == "tenant cap (interactive): 1 per 10 s"


def test_a_backlog_on_a_slow_method_does_not_hold_back_the_accounts_other_calls(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given three calls to a method allowed once per 10 s, inside an account limit of 10/s
    account = _account(engine, tenant, vault, "tiered")
    slow = [make_call(engine, account, url="https://tiered.example/api/slow").id for _ in "abc"]
    assert rig.run(slow) == {slow[0]: CallStatus.COMPLETED}
    # When the account calls another method right after
    other = make_call(engine, account, url="https://tiered.example/api/fast")
    # Then it goes within the account limit's 100 ms, not after the waiting calls' 20 s:
    # they booked only the slow method's limit
    assert rig.run([other.id]) == {other.id: CallStatus.COMPLETED}
    assert attempts(engine, other.id)[0].rate_wait_ms == 100
    parked = load(engine, slow[1])
    assert parked.rate_wait is not None
    assert parked.rate_wait["paid"] == [f"passthru:rl:tiered:1:acct:{account.id}"]
    # And a waiting call, back at its slot, books the account limit then and goes
    back = NOW + timedelta(seconds=9.5)
    assert rig.run([slow[1]], now=back) == {slow[1]: CallStatus.COMPLETED}
    [row] = attempts(engine, slow[1])
    assert (row.rate_wait_ms, row.rate_wait_reason) == (
        10_000,
        "tiered: 1 per 10 s per account on ^/api/slow",
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "https://tiered.example/api/%73low",  # an escaped unreserved character
        "https://tiered.example/api/fast/../slow",  # a dot-segment
        "https://tiered.example/api/./slow",
    ],
)
def test_a_path_rule_cannot_be_dodged_by_spelling_the_path_another_way(
    rig: Rig, engine: Engine, tenant: Tenant, vault: Vault, spelling: str
) -> None:
    # Given the slow method's one call per 10 s already spent
    account = _account(engine, tenant, vault, "tiered")
    first = make_call(engine, account, url="https://tiered.example/api/slow")
    assert rig.run([first.id]) == {first.id: CallStatus.COMPLETED}
    # When the same method is asked for under another spelling of its path
    dodge = make_call(engine, account, url=spelling)
    # Then the rule still holds it back: it waits for the slow method's next slot
    assert rig.run([dodge.id]) == {}
    waiting = load(engine, dodge.id)
    assert waiting.status == CallStatus.QUEUED
    assert waiting.rate_wait is not None
    assert waiting.rate_wait["reason"] == "tiered: 1 per 10 s per account on ^/api/slow"
