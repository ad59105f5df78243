"""The webhook outbox: events written with the results that cause them, and a batch's event
written exactly once even when its last calls finish in two transactions at once."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, func, select, update

from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import Batch, FunctionCall, Tenant, WebhookDelivery, WebhookEndpoint
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.signing import BATCH_EVENT, new_secret, store_secrets
from tests.worker.factories import NOW, make_account, make_call

_calls = FunctionCall.__table__  # type: ignore[attr-defined]


def _batch_events(engine: Engine, batch_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(WebhookDelivery.__table__)  # type: ignore[attr-defined]
                .where(
                    WebhookDelivery.__table__.c.batch_id == batch_id,  # type: ignore[attr-defined]
                    WebhookDelivery.__table__.c.event == BATCH_EVENT,  # type: ignore[attr-defined]
                )
            ).scalar_one()
        )


def test_the_last_calls_of_a_batch_finishing_at_once_still_announce_the_batch(
    engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite runs one writer at a time: the race cannot happen there")
    # Given a batch of two calls, and the tenant's webhook endpoint
    account = make_account(engine, tenant, vault)
    batch_id = new_id("bt")
    with session_scope(engine) as session:
        session.add(Batch(id=batch_id, tenant_id=tenant.id, accepted=2, rejected=0))
        session.add(
            WebhookEndpoint(
                tenant_id=tenant.id,
                url="https://hooks.example.com/in",
                secrets_enc=store_secrets(vault, new_secret(), tenant_id=tenant.id),
            )
        )
    first, second = (make_call(engine, account, batch_id=batch_id) for _ in "ab")
    second_updated = threading.Event()
    errors: list[BaseException] = []

    def finish(call_id: str, signal: threading.Event | None) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(
                    update(_calls).where(_calls.c.id == call_id).values(status=CallStatus.COMPLETED)
                )
                if signal is not None:
                    signal.set()
                enqueue_deliveries(conn, [call_id], NOW)
        except BaseException as exc:
            errors.append(exc)

    # When each call is finished in its own transaction, the second while the first has
    # counted its batch's open calls but not yet committed
    with engine.begin() as conn:
        conn.execute(update(_calls).where(_calls.c.id == first.id).values(status="completed"))
        enqueue_deliveries(conn, [first.id], NOW)
        other = threading.Thread(target=finish, args=(second.id, second_updated))
        other.start()
        assert second_updated.wait(10)
        time.sleep(0.5)  # lets the second transaction reach its count before this commits
    other.join(30)
    # Then exactly one of them wrote the batch's event
    assert errors == []
    assert _batch_events(engine, batch_id) == 1
