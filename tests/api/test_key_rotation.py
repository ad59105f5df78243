"""After `passthru rotate-keys`, the old key can be removed: the webhook endpoint routes and
deliveries keep working with the new key alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook

from api.app import create_app, release
from models.accounts.tenants import create_tenant
from models.calls.states import CallStatus
from models.crypto.rotation import rotate_keys
from models.crypto.secrets import Vault, generate_encryption_key
from models.db.tables import ConnectedAccount
from models.settings import Settings
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.signing import message_id
from tests.api.conftest import PublishedIds, deliver_now
from tests.worker.factories import NOW, make_call

HOOK = "https://hooks.example.com/passthru"


@contextmanager
def _api(engine: Engine, keys: list[str], publisher: PublishedIds) -> Iterator[TestClient]:
    """The API on `engine`, with PASSTHRU_ENCRYPTION_KEYS set to `keys`."""
    settings = Settings(
        _env_file=None,
        database_url=engine.url.render_as_string(hide_password=False),
        encryption_keys=",".join(keys),
        redis_url="redis://127.0.0.1:1/0",
        apps_file=None,
        upstream_overrides={},
    )
    application = create_app(settings, publisher=publisher)
    try:
        yield TestClient(application)
    finally:
        release(application)


def test_after_rotation_the_old_key_can_go(own_engine: Engine, published: PublishedIds) -> None:
    # Given a tenant whose webhook secret and account credentials were written under the old key
    old, new = generate_encryption_key(), generate_encryption_key()
    _, key = create_tenant(own_engine, "rotating")
    auth = {"Authorization": f"Bearer {key}", "X-User-ID": "user-1"}
    with _api(own_engine, [old], published) as client:
        secret = client.put("/webhook-endpoint", json={"url": HOOK}, headers=auth).json()["secret"]
        created = client.post(
            "/connected-accounts",
            json={"app": "slack", "credentials": {"access_token": "xoxb-rotated"}},
            headers=auth,
        )
        assert created.status_code == 201, created.text

    # When the keys are rotated (new first), and then the old key is removed
    assert rotate_keys(own_engine, Vault([new, old])).done
    only_new = Vault([new])

    # Then a delivery is still signed with the tenant's secret
    with Session(own_engine) as session:
        account = session.get(ConnectedAccount, created.json()["id"])
        assert account is not None
    call = make_call(own_engine, account, status=CallStatus.COMPLETED, network_code="200")
    with own_engine.begin() as conn:
        [delivery_id] = enqueue_deliveries(conn, [call.id], NOW)
    status, [request] = deliver_now(own_engine, only_new, delivery_id, NOW)
    assert status == "succeeded"
    assert Webhook(secret).verify(request.content, dict(request.headers))["data"]["id"] == call.id
    assert delivery_id == message_id(call.id)
    # and the account's credentials read
    assert only_new.decrypt(account.credentials_enc, bound_to=account.id) == {
        "access_token": "xoxb-rotated"
    }
    # and the endpoint routes answer
    with _api(own_engine, [new], published) as client:
        put = client.put("/webhook-endpoint", json={"url": HOOK}, headers=auth)
        assert put.status_code == 200, put.text
        assert "secret" not in put.json()
        assert client.get("/webhook-endpoint", headers=auth).status_code == 200
        rotated = client.post("/webhook-endpoint/rotate-secret", headers=auth)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["secret"] != secret
