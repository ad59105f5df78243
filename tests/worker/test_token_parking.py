"""A refresh whose tokens the database will not take: the endpoint may have rotated the refresh
token, so the new tokens are parked in Redis, encrypted, and stored by the account's next
refresh before it asks the endpoint anything (worker/calls/token_store.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import redis
from sqlalchemy import Engine, select, update

from api.dev.embedded_redis import EmbeddedRedis
from models.accounts.credentials import OAuth2Credentials
from models.crypto.secrets import Vault, generate_encryption_key
from models.db.engine import create_db_engine
from models.db.tables import ConnectedAccount, Tenant
from models.errors import CredentialsError
from models.oauth.token_exchange import RefreshUnavailable
from tests.worker.test_oauth import APP, NOW, _account, _patch_during, _stored
from worker.calls.oauth import Refresher
from worker.calls.token_store import parked_key

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]


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
    during_pause: list[Callable[[], None]] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if during_pause:
            during_pause.pop(0)()

    r = Refresher(
        engine=engine,
        vault=vault,
        redis=redis.Redis.from_url(redis_server.url),
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        margin_s=300,
        overrides={},
        on_revoked=revoked.extend,
        clock=lambda: NOW,
        sleep=sleep,
    )
    r.revoked = revoked  # type: ignore[attr-defined]
    r.during_pause = during_pause  # type: ignore[attr-defined]
    yield r, endpoint, pauses
    r.http.close()


class Flaky:
    """An engine that stops answering, and may come back: `now` is where it sends."""

    def __init__(self, up: Engine, down: Engine) -> None:
        self.up, self.now = up, down

    def __getattr__(self, name: str) -> Any:
        return getattr(self.now, name)


def _database_goes_down(r: Refresher, tmp_path: Path) -> Flaky:
    """Once the endpoint answers, the refresher's database stops answering."""
    flaky = Flaky(r.engine, create_db_engine(f"sqlite:///{tmp_path}/no/such/dir/passthru.db"))
    r.engine = flaky  # type: ignore[assignment]
    return flaky


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
    parked_at_first_pause: list[bytes | None] = []
    r.during_pause.append(  # type: ignore[attr-defined]
        lambda: parked_at_first_pause.append(r.redis.get(parked_key(account.id)))
    )
    # When the endpoint rotates the refresh token and the database then refuses the answer
    fresh = r.ensure_fresh(APP, account.id, seen)
    # Then the tokens were parked at the first failure, the store was tried twice more, and
    # the call still gets the new access token
    assert parked_at_first_pause != [None]
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
    r.engine = engine
    assert _stored(engine, vault, account.id).refresh_token == "rt-1"


def test_a_database_back_within_the_retries_takes_the_tokens_and_the_parked_go(
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

    # Given a database that fails the first store and is back by the first retry
    def back() -> None:
        r.engine.now = engine  # type: ignore[attr-defined]

    r.during_pause.append(back)  # type: ignore[attr-defined]
    # When the refresh's tokens are stored / Then the retry stored them, nothing stays parked
    assert r.ensure_fresh(APP, account.id, seen).access_token == "at-new-1"
    assert pauses == [0.2]
    assert _stored(engine, vault, account.id).refresh_token == "rt-rotated-1"
    assert r.redis.get(parked_key(account.id)) is None


def test_retries_stop_once_the_lock_is_lost_and_the_next_holder_stores_the_parked(
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
    # Given a refresh whose lock expires while the database refuses its tokens (another
    # worker may take the account then)
    lock = f"passthru:oauth-lock:{account.id}"
    r.during_pause.append(lambda: r.redis.delete(lock))  # type: ignore[attr-defined]
    # When it ends / Then it stopped retrying at once, its tokens parked for the next holder
    assert r.ensure_fresh(APP, account.id, seen).access_token == "at-new-1"
    assert pauses == [0.2]
    assert r.redis.get(parked_key(account.id)) is not None
    # and the next worker (the database back) stores them instead of spending rt-1
    r.engine = engine
    endpoint.during = lambda: None
    assert r.ensure_fresh(APP, account.id, seen).access_token == "at-new-1"
    assert endpoint.asked_with == ["rt-1"]
    assert _stored(engine, vault, account.id).refresh_token == "rt-rotated-1"


def test_parked_tokens_survive_a_key_rotation_of_the_account(
    rotating: tuple[Refresher, RotatingEndpoint, list[float]],
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    encryption_key: str,
    tmp_path: Path,
) -> None:
    r, endpoint, _ = rotating
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    endpoint.during = lambda: _database_goes_down(r, tmp_path)
    r.ensure_fresh(APP, account.id, seen)
    # Given parked tokens, then `passthru rotate-keys` re-encrypting the account's row
    # under a new key (the old one kept to read the parked entry)
    rotated = Vault([generate_encryption_key(), encryption_key])
    _reencrypt(engine, rotated, vault, account.id)
    # When the next refresh comes, with the new key first
    r.engine, r.vault = engine, rotated
    endpoint.during = lambda: None
    assert r.ensure_fresh(APP, account.id, seen).access_token == "at-new-1"
    # Then the parked tokens were stored (under the new key), not dropped as stale
    assert endpoint.asked_with == ["rt-1"]
    assert _stored(engine, rotated, account.id).refresh_token == "rt-rotated-1"
    with pytest.raises(CredentialsError):  # no longer readable with the old key alone
        _stored(engine, Vault([encryption_key]), account.id)


def test_an_unreadable_parked_entry_is_dropped_and_the_refresh_goes_on(
    rotating: tuple[Refresher, RotatingEndpoint, list[float]],
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
) -> None:
    r, endpoint, _ = rotating
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    for garbage in (b"not json", b'{"ciphertext": 5}', b'{"replacing": "x", "ciphertext": "y"}'):
        r.redis.set(parked_key(account.id), garbage)
        endpoint.current, endpoint.asked_with = "rt-1", []
        _set_tokens(engine, vault, account.id, "rt-1")
        assert r.ensure_fresh(APP, account.id, seen).refresh_token == "rt-rotated-1"
        assert r.redis.get(parked_key(account.id)) is None


def _reencrypt(engine: Engine, new: Vault, old: Vault, account_id: str) -> None:
    with engine.begin() as conn:
        enc = conn.execute(select(_accounts.c.credentials_enc).where(_accounts.c.id == account_id))
        plain = old.decrypt(enc.scalar_one(), bound_to=account_id)
        conn.execute(
            update(_accounts)
            .where(_accounts.c.id == account_id)
            .values(credentials_enc=new.encrypt(plain, bound_to=account_id))
        )


def _set_tokens(engine: Engine, vault: Vault, account_id: str, refresh_token: str) -> None:
    creds = {"access_token": "at-1", "refresh_token": refresh_token, "expires_at": NOW - 1}
    with engine.begin() as conn:
        conn.execute(
            update(_accounts)
            .where(_accounts.c.id == account_id)
            .values(credentials_enc=vault.encrypt(creds, bound_to=account_id))
        )
