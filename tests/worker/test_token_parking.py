"""A refresh whose tokens the database will not take: the endpoint may have rotated the refresh
token, so the new tokens are parked in Redis, encrypted, and stored by the account's next
refresh before it asks the endpoint anything (worker/calls/token_store.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import redis
from sqlalchemy import Engine

from api.dev.embedded_redis import EmbeddedRedis
from models.accounts.credentials import OAuth2Credentials
from models.crypto.secrets import Vault
from models.db.engine import create_db_engine
from models.db.tables import Tenant
from models.oauth.token_exchange import RefreshUnavailable
from tests.worker.test_oauth import APP, NOW, _account, _patch_during, _stored
from worker.calls.oauth import Refresher
from worker.calls.token_store import parked_key


class RotatingEndpoint:
    """A token endpoint that rotates the refresh token: each refresh token works once."""

    def __init__(self, current: str) -> None:
        self.current = current
        self.asked_with: list[str] = []
        self.during = lambda: None  # run while the endpoint answers

    def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = parse_qs(request.content.decode())["refresh_token"][0]
        self.asked_with.append(sent)
        self.during()
        if sent != self.current:
            return httpx.Response(400, json={"error": "invalid_grant"})
        n = len(self.asked_with)
        self.current = f"rt-rotated-{n}"
        return httpx.Response(
            200,
            json={"access_token": f"at-new-{n}", "refresh_token": self.current, "expires_in": 3600},
        )


@pytest.fixture
def rotating(
    engine: Engine, vault: Vault, redis_server: EmbeddedRedis
) -> Iterator[tuple[Refresher, RotatingEndpoint, list[float]]]:
    endpoint = RotatingEndpoint("rt-1")
    pauses: list[float] = []
    revoked: list[str] = []
    r = Refresher(
        engine=engine,
        vault=vault,
        redis=redis.Redis.from_url(redis_server.url),
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        margin_s=300,
        overrides={},
        on_revoked=revoked.extend,
        clock=lambda: NOW,
        sleep=pauses.append,
    )
    r.revoked = revoked  # type: ignore[attr-defined]
    yield r, endpoint, pauses
    r.http.close()


def _database_goes_down(r: Refresher, tmp_path: Path) -> Engine:
    """Once the endpoint answers, the refresher's database stops answering."""
    up = r.engine
    r.engine = create_db_engine(f"sqlite:///{tmp_path}/no/such/dir/passthru.db")
    return up


def test_rotated_tokens_the_database_refuses_are_parked_then_stored_by_the_next_refresh(
    rotating: tuple[Refresher, RotatingEndpoint, list[float]],
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    tmp_path: Path,
) -> None:
    r, endpoint, pauses = rotating
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    endpoint.during = lambda: _database_goes_down(r, tmp_path)
    # When the endpoint rotates the refresh token and the database then refuses the answer
    fresh = r.ensure_fresh(APP, account.id, seen)
    # Then the call still gets the new access token, after the store was tried three times
    assert fresh.access_token == "at-new-1"
    assert pauses == [0.2, 1.0]
    assert _stored(engine, vault, account.id).refresh_token == "rt-1"
    parked = r.redis.get(parked_key(account.id))
    assert parked is not None
    assert b"rt-rotated-1" not in parked
    assert b"at-new-1" not in parked  # encrypted, as in the database
    # When the database is back and the next call finds the stored token expiring
    r.engine = engine
    endpoint.during = lambda: None
    again = r.ensure_fresh(APP, account.id, seen)
    # Then the parked tokens are stored and sent, without asking the endpoint with the
    # refresh token it no longer takes (which would have revoked the account)
    assert endpoint.asked_with == ["rt-1"]
    assert again.access_token == "at-new-1"
    assert _stored(engine, vault, account.id).refresh_token == "rt-rotated-1"
    assert r.redis.get(parked_key(account.id)) is None
    assert r.revoked == []  # type: ignore[attr-defined]


def test_parked_tokens_are_dropped_when_the_tenant_stored_new_credentials_since(
    rotating: tuple[Refresher, RotatingEndpoint, list[float]],
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    tmp_path: Path,
) -> None:
    r, endpoint, _ = rotating
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    endpoint.during = lambda: _database_goes_down(r, tmp_path)
    r.ensure_fresh(APP, account.id, seen)
    # Given parked tokens, and then the tenant's new credentials stored (a reconnection)
    r.engine = engine
    endpoint.during = lambda: None
    _patch_during(engine, vault, account.id, "at-patched")
    endpoint.current = "rt-new"
    # When the next call needs a refresh
    r.ensure_fresh(APP, account.id, seen.model_copy(update={"access_token": "at-patched"}))
    # Then the parked tokens never overwrite the tenant's: the refresh uses theirs
    assert endpoint.asked_with == ["rt-1", "rt-new"]
    assert _stored(engine, vault, account.id).refresh_token == "rt-rotated-2"
    assert r.redis.get(parked_key(account.id)) is None


def test_tokens_neither_the_database_nor_redis_takes_make_the_refresh_unavailable(
    rotating: tuple[Refresher, RotatingEndpoint, list[float]],
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, endpoint, _ = rotating
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    lock_holder = r.redis

    def both_go_down() -> None:
        _database_goes_down(r, tmp_path)
        r.redis = redis.Redis(port=1, socket_connect_timeout=0.2)

    endpoint.during = both_go_down
    # When neither takes the refreshed tokens / Then the call is tried again later, and the
    # operator's log says the tokens were lost, without quoting them
    refused = pytest.raises(RefreshUnavailable, match=r"did not take the refreshed tokens")
    with caplog.at_level(logging.WARNING, logger="passthru.oauth"), refused:
        r.ensure_fresh(APP, account.id, seen)
    assert any("lost" in m for m in caplog.messages)
    assert not any("rt-rotated" in m or "at-new" in m for m in caplog.messages)
    assert lock_holder.get(parked_key(account.id)) is None
