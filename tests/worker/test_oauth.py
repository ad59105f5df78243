"""OAuth2 refresh: once per account under a Redis lock, stored encrypted; a revoked refresh
token makes the account `needs_reauth` and fails its waiting calls."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session

from api.dev.embedded_redis import EmbeddedRedis
from models.accounts.credentials import OAuth2Credentials, load_credentials
from models.calls.states import CallStatus
from models.catalog.apps import App, Catalog, parse_catalog
from models.crypto.secrets import Vault
from models.db.engine import create_db_engine
from models.db.tables import ConnectedAccount, Tenant
from models.errors import SecretOfAnotherRow
from models.oauth.token_exchange import RefreshUnavailable, Revoked
from tests.worker.factories import (
    RecordingPublisher,
    attempts,
    load,
    make_account,
    make_call,
    make_runtime,
)
from worker.calls.oauth import Refresher
from worker.calls.pipeline import execute_calls
from worker.runtime import Runtime

NOW = 2_000_000_000.0
APP: App = parse_catalog(
    {
        "crm": {
            "name": "CRM",
            "base_url": "https://crm.example/api",
            "allowed_hosts": ["crm.example"],
            "auth": {"type": "bearer"},
            "oauth2": {
                "token_url": "https://auth.crm.example/token",
                "client_id": "cid",
                "client_secret": "csecret",
            },
        }
    },
    "test",
)["crm"]


class TokenEndpoint:
    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.answer = httpx.Response(
            200, json={"access_token": "new", "refresh_token": "r2", "expires_in": 3600}
        )
        self.delay_s = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
        time.sleep(self.delay_s)
        return self.answer


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
def refresher(
    engine: Engine, vault: Vault, redis_server: EmbeddedRedis, endpoint: TokenEndpoint
) -> Iterator[Refresher]:
    client = redis.Redis.from_url(redis_server.url)
    revoked: list[str] = []
    r = Refresher(
        engine=engine,
        vault=vault,
        redis=client,
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        margin_s=300,
        overrides={},
        on_revoked=revoked.extend,
        clock=lambda: NOW,
    )
    r.revoked = revoked  # type: ignore[attr-defined]
    yield r
    r.http.close()
    client.close()


def _account(engine: Engine, tenant: Tenant, vault: Vault, **creds: object) -> ConnectedAccount:
    return make_account(engine, tenant, vault, app="crm", credentials=creds)


def _stored(engine: Engine, vault: Vault, account_id: str) -> OAuth2Credentials:
    with Session(engine) as session:
        account = session.get(ConnectedAccount, account_id)
        assert account is not None
        creds = load_credentials(vault.decrypt(account.credentials_enc, bound_to=account_id))
    assert isinstance(creds, OAuth2Credentials)
    return creds


def test_a_token_far_from_expiry_is_used_as_is(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    seen = OAuth2Credentials(access_token="a", refresh_token="r", expires_at=NOW + 3600)
    account = _account(engine, tenant, vault, **seen.model_dump())
    assert refresher.ensure_fresh(APP, account.id, seen) is seen
    assert endpoint.forms == []


def test_an_expiring_token_is_refreshed_and_stored(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a token expiring within the margin
    seen = OAuth2Credentials(access_token="a", refresh_token="r1", expires_at=NOW + 60)
    account = _account(engine, tenant, vault, **seen.model_dump())
    # When a call needs it
    fresh = refresher.ensure_fresh(APP, account.id, seen)
    # Then it was refreshed with the operator's client, and the new tokens are stored
    assert endpoint.forms == [
        {
            "grant_type": "refresh_token",
            "refresh_token": "r1",
            "client_id": "cid",
            "client_secret": "csecret",
        }
    ]
    assert (fresh.access_token, fresh.refresh_token, fresh.expires_at) == ("new", "r2", NOW + 3600)
    assert _stored(engine, vault, account.id) == fresh


def test_a_refresh_token_stored_under_older_rules_is_kept_without_quoting_it(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a refresh token stored before tokens had to be ASCII, and a token endpoint that
    # hands back an access token alone
    legacy = "1//0gRefreshTökenSecretValue42"
    seen = load_credentials({"access_token": "a", "refresh_token": legacy, "expires_at": NOW})
    account = _account(
        engine, tenant, vault, access_token="a", refresh_token=legacy, expires_at=NOW
    )
    endpoint.answer = httpx.Response(200, json={"access_token": "new", "expires_in": 3600})
    # When a call needs a fresh token / Then it is refreshed, and the old refresh token kept
    fresh = refresher.ensure_fresh(APP, account.id, seen)
    assert (fresh.access_token, fresh.refresh_token) == ("new", legacy)


def test_refreshed_tokens_are_stored_bound_to_their_account(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an expiring token, refreshed
    seen = OAuth2Credentials(access_token="a", refresh_token="r1", expires_at=NOW + 60)
    account = _account(engine, tenant, vault, **seen.model_dump())
    refresher.ensure_fresh(APP, account.id, seen)
    # Then the stored tokens are bound to the account: copied onto another row, they are refused
    with Session(engine) as session:
        stored = session.get(ConnectedAccount, account.id)
        assert stored is not None
    assert vault.is_current(stored.credentials_enc, bound_to=account.id)
    with pytest.raises(SecretOfAnotherRow):
        vault.decrypt(stored.credentials_enc, bound_to="ca_another")


def test_a_refresh_token_copied_from_another_account_is_never_sent(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given account B whose row holds account A's tokens (swapped in the database)
    a = _account(engine, tenant, vault, access_token="a", refresh_token="r-of-a")
    b = make_account(engine, tenant, vault, app="crm", encrypted=a.credentials_enc)
    seen = OAuth2Credentials(access_token="b", refresh_token="r-of-b", expires_at=NOW - 1)
    # When a call of B needs a refresh / Then it is refused before the token endpoint is asked
    with pytest.raises(SecretOfAnotherRow):
        refresher.ensure_fresh(APP, b.id, seen)
    assert endpoint.forms == []


def test_concurrent_calls_refresh_once(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an expired token and a token endpoint that takes 0.3 s
    seen = OAuth2Credentials(access_token="a", refresh_token="r1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    endpoint.delay_s = 0.3
    start = threading.Barrier(8)
    got: list[str] = []

    def call() -> None:
        start.wait(10)
        got.append(refresher.ensure_fresh(APP, account.id, seen).access_token)

    # When 8 threads need it at the same moment
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Then one refreshed and all use the new token
    assert len(endpoint.forms) == 1
    assert got == ["new"] * 8


def test_a_revoked_refresh_token_fails_the_accounts_waiting_calls(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an expired token whose refresh token was revoked, and two waiting calls
    endpoint.answer = httpx.Response(400, json={"error": "invalid_grant"})
    seen = OAuth2Credentials(access_token="a", refresh_token="gone", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    waiting = [make_call(engine, account, url="https://crm.example/api/x") for _ in "ab"]
    running = make_call(engine, account, url="https://crm.example/api/y", status=CallStatus.RUNNING)
    # When a call needs the token
    with pytest.raises(Revoked):
        refresher.ensure_fresh(APP, account.id, seen)
    # Then the account needs its user, the waiting calls failed (and were announced), and
    # the running one is left to its worker
    with Session(engine) as session:
        stored = session.get(ConnectedAccount, account.id)
        assert stored is not None
        assert stored.status == "needs_reauth"
    for call in waiting:
        done = load(engine, call.id)
        assert (done.status, done.error) == (CallStatus.FAILED, "credentials_revoked")
        assert done.finished_at is not None
    assert sorted(refresher.revoked) == sorted(c.id for c in waiting)  # type: ignore[attr-defined]
    assert load(engine, running.id).status is CallStatus.RUNNING
    # And another call meeting the account asks the token endpoint no more
    with pytest.raises(Revoked):
        refresher.ensure_fresh(APP, account.id, seen)
    assert len(endpoint.forms) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="down"),
        httpx.Response(200, json={"token_type": "bearer"}),
        httpx.Response(400, json={"error": "invalid_client"}),
    ],
)
def test_a_failing_token_endpoint_is_unavailable_not_revoked(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    answer: httpx.Response,
) -> None:
    endpoint.answer = answer
    seen = OAuth2Credentials(access_token="a", refresh_token="r1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    with pytest.raises(RefreshUnavailable):
        refresher.ensure_fresh(APP, account.id, seen)
    assert _stored(engine, vault, account.id).access_token == "a"


def test_a_401_refreshes_once_then_stands(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a token the upstream refuses although it has not expired
    seen = OAuth2Credentials(access_token="a", refresh_token="r1", expires_at=NOW + 3600)
    account = _account(engine, tenant, vault, **seen.model_dump())
    # When a 401 comes back / Then the token is refreshed
    fresh = refresher.ensure_fresh(APP, account.id, seen, after_401=True)
    assert fresh.access_token == "new"
    # And when the new token gets a 401 too, it is not refreshed again right away
    assert refresher.ensure_fresh(APP, account.id, fresh, after_401=True) == fresh
    assert len(endpoint.forms) == 1


def _refusing_old_tokens(
    engine: Engine, vault: Vault, refresher: Refresher, sent: list[str]
) -> tuple[Runtime, RecordingPublisher]:
    """A runtime whose upstream answers 401 to `Bearer old` and 200 to any other token,
    noting each Authorization it gets in `sent`."""

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(401 if request.headers["authorization"] == "Bearer old" else 200)

    runtime = make_runtime(
        engine,
        Catalog({"crm": APP}),
        vault,
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
        max_response_bytes=1000,
    )
    published = RecordingPublisher()
    return replace(runtime, refresher=refresher, publisher=published), published


@pytest.mark.parametrize("options", [None, {"retry": {"max_attempts": 3}}])
def test_a_401_in_the_pipeline_refreshes_and_tries_again_at_once(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault, options: Any
) -> None:
    # Given a token the upstream no longer accepts, though it has not expired
    account = _account(
        engine, tenant, vault, access_token="old", refresh_token="r1", expires_at=NOW + 3600
    )
    call = make_call(engine, account, url="https://crm.example/api/items", options=options)
    runtime, published = _refusing_old_tokens(engine, vault, refresher, [])
    try:
        # When it runs
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.RETRYING}
        # Then the token was refreshed and the call goes again at once
        assert [(ids, countdown) for ids, _, countdown in published.calls] == [([call.id], 0.0)]
        [row] = attempts(engine, call.id)
        assert (row.network_code, row.decision) == (
            "401",
            "retry in 0 ms: upstream answered 401; token refreshed",
        )
        # And its next attempt, with the new token, completes
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.COMPLETED}
    finally:
        runtime.sender.close()


def test_a_401_is_not_sent_again_when_the_call_allows_one_attempt(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a token the upstream no longer accepts, and a POST whose own rules allow one
    # attempt ("max_attempts: 1 turns retries off")
    account = _account(
        engine, tenant, vault, access_token="old", refresh_token="r1", expires_at=NOW + 3600
    )
    call = make_call(
        engine,
        account,
        method="POST",
        url="https://crm.example/api/items",
        options={"retry": {"max_attempts": 1}},
    )
    sent: list[str] = []
    runtime, _ = _refusing_old_tokens(engine, vault, refresher, sent)
    try:
        # When it runs / Then the 401 stands: the call ends, sent once
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.COMPLETED}
        assert sent == ["Bearer old"]
        assert attempts(engine, call.id)[0].network_code == "401"
    finally:
        runtime.sender.close()


TEMPLATED: App = parse_catalog(
    {
        "desk": {
            "name": "Desk",
            "base_url": "https://{subdomain}.desk.example/api",
            "allowed_hosts": ["{subdomain}.desk.example"],
            "auth": {"type": "bearer"},
            "oauth2": {"token_url": "https://{subdomain}.desk.example/oauth/token"},
        }
    },
    "test",
)["desk"]


def test_a_templated_token_url_is_filled_in_from_the_account(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an app whose token URL lives on each account's subdomain
    urls: list[str] = []

    def token(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={"access_token": "fresh", "expires_in": 60})

    seen = OAuth2Credentials(access_token="old", refresh_token="r", expires_at=NOW - 1)
    account = make_account(
        engine,
        tenant,
        vault,
        app="desk",
        credentials=seen.model_dump(),
        connection_config={"subdomain": "acme"},
    )
    r = replace(refresher, http=httpx.Client(transport=httpx.MockTransport(token)))
    # When its expired token is refreshed
    fresh = r.ensure_fresh(TEMPLATED, account.id, seen, config={"subdomain": "acme"})
    # Then the refresh went to that account's token URL
    assert urls == ["https://acme.desk.example/oauth/token"]
    assert fresh.access_token == "fresh"


BASIC_CLIENT: App = APP.model_copy(
    update={
        "oauth2": APP.oauth2.model_copy(
            update={
                "token_auth": "basic",
                "client_id": "c id:1",
                "client_secret": SecretStr("s&cret"),
            }
        )
        if APP.oauth2
        else None
    }
)


def test_a_token_endpoint_that_wants_basic_auth_gets_the_client_there_not_in_the_form(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an app whose token endpoint authenticates its client with HTTP Basic
    seen: list[tuple[str | None, dict[str, list[str]]]] = []

    def token(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("authorization"), parse_qs(request.content.decode())))
        return httpx.Response(200, json={"access_token": "fresh", "expires_in": 60})

    creds = OAuth2Credentials(access_token="old", refresh_token="r", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **creds.model_dump())
    r = replace(refresher, http=httpx.Client(transport=httpx.MockTransport(token)))
    # When its expired token is refreshed
    fresh = r.ensure_fresh(BASIC_CLIENT, account.id, creds)
    # Then the id and secret, form-encoded (RFC 6749 2.3.1), are the Basic credentials, and
    # the form carries only the grant
    [(authorization, form)] = seen
    assert authorization == "Basic " + base64.b64encode(b"c+id%3A1:s%26cret").decode()
    assert form == {"grant_type": ["refresh_token"], "refresh_token": ["r"]}
    assert fresh.access_token == "fresh"


@pytest.mark.parametrize(
    "answer",
    [
        {"access_token": ""},
        {"access_token": 42},
        {"access_token": "x" * 20_000},
        {"error": "server_error"},
    ],
)
def test_a_token_endpoint_answering_nonsense_is_a_refresh_failure(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    answer: dict[str, object],
) -> None:
    endpoint.answer = httpx.Response(200, json=answer)
    seen = OAuth2Credentials(access_token="a", refresh_token="r", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    with pytest.raises(RefreshUnavailable):
        refresher.ensure_fresh(APP, account.id, seen)


@pytest.mark.parametrize("expires_in", ["-5", "0", "1e308", "true", '"3600"', "null"])
def test_an_unreadable_lifetime_is_not_believed(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    expires_in: str,
) -> None:
    # Given a token endpoint writing a lifetime that is not a finite positive number
    endpoint.answer = httpx.Response(
        200,
        content=f'{{"access_token": "new", "expires_in": {expires_in}}}'.encode(),
        headers={"content-type": "application/json"},
    )
    seen = OAuth2Credentials(access_token="a", refresh_token="r", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    # When refreshed / Then the token is used, with an expiry that is unknown or bounded
    fresh = refresher.ensure_fresh(APP, account.id, seen)
    assert fresh.access_token == "new"
    assert fresh.expires_at is None or fresh.expires_at <= NOW + 10 * 365 * 86_400


def test_a_revocation_message_echoing_the_refresh_token_is_scrubbed(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    endpoint.answer = httpx.Response(
        400,
        json={"error": "invalid_grant", "error_description": "token r-secret-9 revoked (csecret)"},
    )
    seen = OAuth2Credentials(access_token="a", refresh_token="r-secret-9", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    with pytest.raises(Revoked) as caught:
        refresher.ensure_fresh(APP, account.id, seen)
    assert "r-secret-9" not in str(caught.value)
    assert "csecret" not in str(caught.value)


@pytest.mark.parametrize("answer", [b'{"access_token": "new", "expires_in": Infinity}', b"[1, 2"])
def test_an_answer_that_is_not_json_is_a_refresh_failure(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    answer: bytes,
) -> None:
    # Given a token endpoint answering something that is not JSON (NaN and Infinity are not)
    endpoint.answer = httpx.Response(
        200, content=answer, headers={"content-type": "application/json"}
    )
    seen = OAuth2Credentials(access_token="at-old", refresh_token="rt-old", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    # When refreshed / Then it failed for now (retried later), and nothing was stored
    with pytest.raises(RefreshUnavailable, match="without a usable access_token"):
        refresher.ensure_fresh(APP, account.id, seen)
    assert _stored(engine, vault, account.id).access_token == "at-old"


# --- a token endpoint is an upstream too; the account may change while it answers ---------


def test_without_redis_a_refresh_is_unavailable_not_a_crash(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    gone = redis.Redis(port=1, socket_connect_timeout=0.2)
    with pytest.raises(RefreshUnavailable, match="lock is unavailable"):
        replace(refresher, redis=gone).ensure_fresh(APP, account.id, seen)


def test_a_database_failing_during_a_refresh_makes_it_unavailable_not_a_bad_request(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault, tmp_path: Path
) -> None:
    # Given an expired token, and a database that fails once the refresh reads the account
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    down = create_db_engine(f"sqlite:///{tmp_path}/no/such/dir/passthru.db")
    # When renewed / Then it is a refresh to try again later (the call is retried), never an
    # error escaping to fail the call as a request that cannot be built
    with pytest.raises(RefreshUnavailable, match=r"database did not answer .*OperationalError"):
        replace(refresher, engine=down).ensure_fresh(APP, account.id, seen)


def _patch_during(engine: Engine, vault: Vault, account_id: str, token: str) -> None:
    """The tenant stores new credentials (PATCH) while a refresh is running."""
    with engine.begin() as conn:
        conn.execute(
            ConnectedAccount.__table__.update()  # type: ignore[attr-defined]
            .where(ConnectedAccount.__table__.c.id == account_id)  # type: ignore[attr-defined]
            .values(
                credentials_enc=vault.encrypt(
                    {"access_token": token, "refresh_token": "rt-new"}, bound_to=account_id
                ),
                status="active",
            )
        )


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"access_token": "from-the-old-grant", "expires_in": 60}),
        httpx.Response(400, json={"error": "invalid_grant"}),
    ],
    ids=["refreshed", "revoked"],
)
def test_credentials_stored_during_a_refresh_win(
    refresher: Refresher,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    answer: httpx.Response,
) -> None:
    # Given a refresh whose answer comes after the tenant stored new credentials
    seen = OAuth2Credentials(access_token="at-old", refresh_token="rt-old", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())

    def token(_: httpx.Request) -> httpx.Response:
        _patch_during(engine, vault, account.id, "at-patched")
        return answer

    r = replace(refresher, http=httpx.Client(transport=httpx.MockTransport(token)))
    # When the refresh ends / Then the new credentials stand: neither overwritten by tokens
    # of the old grant, nor revoked for the old grant's refusal
    fresh = r.ensure_fresh(APP, account.id, seen)
    assert fresh.access_token == "at-patched"
    assert _stored(engine, vault, account.id).access_token == "at-patched"
    with Session(engine) as session:
        stored = session.get(ConnectedAccount, account.id)
        assert stored is not None
        assert stored.status == "active"


class _Drip(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        while True:
            time.sleep(0.05)
            yield b" "


def test_a_token_endpoint_that_drips_is_cut_at_the_deadline(
    refresher: Refresher,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("models.oauth.token_exchange.TOKEN_DEADLINE_S", 0.3)
    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    drip = httpx.MockTransport(lambda _: httpx.Response(200, stream=_Drip()))
    with pytest.raises(RefreshUnavailable, match=r"no complete answer within 0\.3 s"):
        replace(refresher, http=httpx.Client(transport=drip)).ensure_fresh(APP, account.id, seen)


def test_a_token_endpoint_answering_a_bomb_is_refused_without_decoding_it(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a token endpoint answering 10 MiB of zeros as 10 KiB of gzip (within the
    # 64 KiB it may send, far beyond what it may decode to)
    import gzip

    bomb = gzip.compress(bytes(10 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 64 * 1024

    class Raw(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield bomb

    seen = OAuth2Credentials(access_token="at-1", refresh_token="rt-1", expires_at=NOW - 1)
    account = _account(engine, tenant, vault, **seen.model_dump())
    answer = httpx.MockTransport(
        lambda _: httpx.Response(200, headers={"content-encoding": "gzip"}, stream=Raw())
    )
    # When refreshed / Then its answer is too long to read, and nothing was decoded whole
    with pytest.raises(RefreshUnavailable, match="too long"):
        replace(refresher, http=httpx.Client(transport=answer)).ensure_fresh(APP, account.id, seen)
