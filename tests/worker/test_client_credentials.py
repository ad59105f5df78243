"""The client credentials grant: an access token fetched with the account's own client id and
secret, under the account's lock, stored encrypted with its expiry, renewed when it expires
or after a 401; a refused client makes the account `needs_reauth`, a failing endpoint is
retried; the secret is never stored, logged or shown, whatever the endpoint answers."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import redis
from sqlalchemy import Engine
from sqlmodel import Session

from api.dev.embedded_redis import EmbeddedRedis
from models.accounts.credentials import ClientToken, load_credentials
from models.calls.states import CallStatus
from models.catalog.apps import App, Catalog, parse_catalog
from models.crypto.secrets import Vault
from models.db.engine import create_db_engine
from models.db.tables import ConnectedAccount, Tenant
from models.errors import CredentialsError
from models.oauth.token_exchange import ClientRefused, RefreshUnavailable
from tests.worker.factories import RecordingPublisher, attempts, load, make_account, make_call
from tests.worker.factories import make_runtime as _make_runtime
from worker.calls.client_token import token_request
from worker.calls.oauth import Refresher
from worker.calls.pipeline import execute_calls
from worker.runtime import Runtime

NOW = 2_000_000_000.0
MARGIN_S = 300.0
SECRET = "cc-Secret/+value=42"
CLIENT = {"type": "client_credentials", "client_id": "acme id", "client_secret": SECRET}
ITEMS = "https://hr.example/api/items"


def _app(token_auth: str = "body", scopes: list[str] | None = None) -> App:
    entry = {
        "name": "HR",
        "base_url": "https://hr.example/api",
        "allowed_hosts": ["hr.example"],
        "auth": {"type": "bearer"},
        "oauth2": {
            "grant": "client_credentials",
            "token_url": "https://auth.hr.example/oauth/token",
            "token_auth": token_auth,
            "scopes": scopes or [],
        },
    }
    return parse_catalog({"hr": entry}, "test")["hr"]


APP = _app()


class TokenEndpoint:
    """Hands out tok-1, tok-2, ... (or `answer`), recording each request's form and headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], httpx.Headers]] = []
        self.answer: httpx.Response | httpx.TransportError | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append((form, request.headers))
        if isinstance(self.answer, httpx.TransportError):
            raise self.answer
        if self.answer is not None:
            return self.answer
        token = f"tok-{len(self.requests)}"
        return httpx.Response(200, json={"access_token": token, "expires_in": 3600})


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
def clock() -> list[float]:
    return [NOW]


@pytest.fixture
def refresher(
    engine: Engine,
    vault: Vault,
    redis_server: EmbeddedRedis,
    endpoint: TokenEndpoint,
    clock: list[float],
) -> Iterator[Refresher]:
    client = redis.Redis.from_url(redis_server.url)
    r = Refresher(
        engine=engine,
        vault=vault,
        redis=client,
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
        margin_s=MARGIN_S,
        overrides={},
        clock=lambda: clock[0],
    )
    yield r
    r.http.close()
    client.close()


def _account(engine: Engine, tenant: Tenant, vault: Vault, **extra: Any) -> ConnectedAccount:
    return make_account(engine, tenant, vault, app="hr", credentials={**CLIENT, **extra})


def _stored(engine: Engine, vault: Vault, account: ConnectedAccount) -> tuple[ClientToken, str]:
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        creds = load_credentials(vault.decrypt(row.credentials_enc, bound_to=account.id))
        assert isinstance(creds, ClientToken)
        return creds, f"{row.status} {row.credentials_enc}"


def _seen(engine: Engine, vault: Vault, account: ConnectedAccount) -> ClientToken:
    return _stored(engine, vault, account)[0]


# --- the token request ----------------------------------------------------------------


def test_the_client_goes_in_the_form_by_default_with_no_scope(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    account = _account(engine, tenant, vault)
    fresh = refresher.ensure_token(APP, account.id, _seen(engine, vault, account))
    [(form, headers)] = endpoint.requests
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "acme id",
        "client_secret": SECRET,
    }
    assert "authorization" not in headers
    assert (fresh.access_token, fresh.expires_at, fresh.refreshed_at) == ("tok-1", NOW + 3600, NOW)


def test_basic_token_auth_sends_the_client_as_http_basic_with_the_scopes(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    app = _app("basic", ["read:items", "write:items"])
    account = _account(engine, tenant, vault)
    refresher.ensure_token(app, account.id, _seen(engine, vault, account))
    [(form, headers)] = endpoint.requests
    assert form == {"grant_type": "client_credentials", "scope": "read:items write:items"}
    # RFC 6749 section 2.3.1: id and secret form-encoded, then joined
    pair = "acme+id:cc-Secret%2F%2Bvalue%3D42"
    assert headers["authorization"] == "Basic " + base64.b64encode(pair.encode()).decode()


def test_a_fetched_token_is_stored_encrypted_and_reused_until_the_margin(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    clock: list[float],
) -> None:
    # Given an account whose token was fetched (it lives an hour)
    account = _account(engine, tenant, vault)
    first = refresher.ensure_token(APP, account.id, _seen(engine, vault, account))
    stored, raw = _stored(engine, vault, account)
    assert stored == first
    assert "tok-1" not in raw
    assert SECRET not in raw
    # When calls come until just before the margin / Then it is used as is
    clock[0] = NOW + 3600 - MARGIN_S - 1
    assert refresher.ensure_token(APP, account.id, _seen(engine, vault, account)) == first
    assert len(endpoint.requests) == 1
    # And within the margin a new one is fetched and stored
    clock[0] = NOW + 3600 - MARGIN_S + 1
    second = refresher.ensure_token(APP, account.id, _seen(engine, vault, account))
    assert second.access_token == "tok-2"
    assert _seen(engine, vault, account).access_token == "tok-2"
    assert len(endpoint.requests) == 2


def test_a_401_fetches_one_new_token_then_stands(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    account = _account(engine, tenant, vault, access_token="old", expires_at=NOW + 3600)
    fresh = refresher.ensure_token(APP, account.id, _seen(engine, vault, account), after_401=True)
    assert fresh.access_token == "tok-1"
    # A 401 to the token just fetched for a 401 is the answer: no other token right away
    assert refresher.ensure_token(APP, account.id, fresh, after_401=True) == fresh
    assert len(endpoint.requests) == 1


def test_an_app_that_no_longer_takes_a_client_asks_no_token_endpoint(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given an account stored while its app took client credentials, and a catalog that
    # now gives the app the authorization-code grant
    account = _account(engine, tenant, vault)
    assert APP.oauth2 is not None
    code_grant = APP.oauth2.model_copy(update={"grant": "authorization_code"})
    code_app = APP.model_copy(update={"oauth2": code_grant})
    # When a call needs a token / Then its credentials are invalid, and nothing is asked
    with pytest.raises(CredentialsError, match="no longer takes client credentials"):
        refresher.ensure_token(code_app, account.id, _seen(engine, vault, account))
    assert endpoint.requests == []


# --- in the pipeline ------------------------------------------------------------------


@contextmanager
def _pipeline(
    engine: Engine, vault: Vault, refresher: Refresher, upstream: Any
) -> Iterator[tuple[Runtime, RecordingPublisher]]:
    """A runtime of the HR app whose upstream is `upstream`, with this test's refresher."""
    runtime = _make_runtime(
        engine,
        Catalog({"hr": APP}),
        vault,
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
        max_response_bytes=10_000,
    )
    published = RecordingPublisher()
    try:
        yield replace(runtime, refresher=refresher, publisher=published), published
    finally:
        runtime.sender.close()


def test_a_401_in_the_pipeline_renews_the_token_and_tries_again_at_once(
    refresher: Refresher, endpoint: TokenEndpoint, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a token the upstream no longer takes, though it has not expired
    account = _account(engine, tenant, vault, access_token="old", expires_at=NOW + 3600)
    call = make_call(engine, account, url=ITEMS)
    sent: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(401 if sent[-1] == "Bearer old" else 200, json={"ok": True})

    with _pipeline(engine, vault, refresher, upstream) as (runtime, published):
        # When it runs / Then one new token is fetched and the call goes again at once
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.RETRYING}
        assert [countdown for _, _, countdown in published.calls] == [0.0]
        [row] = attempts(engine, call.id)
        assert row.decision == "retry in 0 ms: upstream answered 401; token refreshed"
        # And its next attempt carries the new token and completes
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.COMPLETED}
    assert sent == ["Bearer old", "Bearer tok-1"]
    assert len(endpoint.requests) == 1


def _everything_stored(engine: Engine, call_id: str) -> str:
    done = load(engine, call_id)
    rows = [done.model_dump(), *(a.model_dump() for a in attempts(engine, call_id))]
    return repr(rows)


@pytest.mark.parametrize(
    ("status", "echo"),
    [
        (401, {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}),
        (400, {"error": "invalid_client", "error_description": f"no such client {SECRET[:12]}"}),
        (400, {"error": "unauthorized_client", "error_description": "no such client"}),
    ],
)
def test_a_refused_client_needs_reauth_and_no_secret_is_kept(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    caplog: pytest.LogCaptureFixture,
    status: int,
    echo: dict[str, str],
) -> None:
    # Given a token endpoint that refuses the client, echoing (part of) its secret
    caplog.set_level(logging.DEBUG)
    endpoint.answer = httpx.Response(status, json=echo)
    account = _account(engine, tenant, vault)
    waiting = make_call(engine, account, url=ITEMS)
    call = make_call(engine, account, url=ITEMS)
    with _pipeline(engine, vault, refresher, lambda _: httpx.Response(200)) as (runtime, _):
        # When a call runs
        execute_calls([call.id], runtime)
    # Then it failed, the account needs its user, and its other waiting call failed too
    done = load(engine, call.id)
    assert (done.status, done.error) == (CallStatus.FAILED, "credentials_revoked")
    assert "refused the account's client id and secret" in (done.error_message or "")
    assert _stored(engine, vault, account)[1].startswith("needs_reauth ")
    assert load(engine, waiting.id).error == "credentials_revoked"
    # And nothing of the endpoint's text is kept but a standard error code
    for text in (_everything_stored(engine, call.id), caplog.text):
        assert SECRET[:12] not in text
        assert "bad secret" not in text
        assert "no such client" not in text
    with pytest.raises(ClientRefused):  # the account is not asked about again
        refresher.ensure_token(APP, account.id, _seen(engine, vault, account))
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, json={"error": "server_error", "error_description": SECRET}),
        httpx.Response(200, json={"token_type": "bearer", "note": SECRET}),
        httpx.Response(500, text=f"<html>{SECRET}</html>"),
        # a 400 about the request or the catalog's scope is not the account's fault
        httpx.Response(400, json={"error": "invalid_scope", "error_description": SECRET}),
        httpx.Response(400, json={"error": f"no such client acme id / {SECRET[:12]}"}),
        httpx.ReadTimeout(f"timed out sending {SECRET}"),
    ],
)
def test_a_failing_token_endpoint_is_retried_not_revoked(
    refresher: Refresher,
    endpoint: TokenEndpoint,
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    caplog: pytest.LogCaptureFixture,
    answer: httpx.Response | httpx.TransportError,
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint.answer = answer
    account = _account(engine, tenant, vault)
    with pytest.raises(RefreshUnavailable):
        refresher.ensure_token(APP, account.id, _seen(engine, vault, account))
    call = make_call(engine, account, url=ITEMS)
    with _pipeline(engine, vault, refresher, lambda _: httpx.Response(200)) as (runtime, _):
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.RETRYING}
    [row] = attempts(engine, call.id)
    assert row.error == "token_refresh_failed"
    assert _stored(engine, vault, account)[1].startswith("active ")
    for text in (_everything_stored(engine, call.id), caplog.text):
        assert SECRET not in text


def test_the_client_secret_echoed_by_the_upstream_is_scrubbed(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    account = _account(engine, tenant, vault)
    call = make_call(engine, account, url=ITEMS)
    answer = httpx.Response(200, json={"seen": SECRET})
    with _pipeline(engine, vault, refresher, lambda _: answer) as (runtime, _):
        assert execute_calls([call.id], runtime) == {call.id: CallStatus.COMPLETED}
    assert SECRET not in _everything_stored(engine, call.id)
    assert "[redacted]" in _everything_stored(engine, call.id)


@pytest.mark.parametrize(("separator", "sent"), [(" ", "a b"), (",", "a,b"), ("+", "a b")])
def test_scopes_are_joined_as_a_form_reads_them(separator: str, sent: str) -> None:
    # "+" joins scopes in a URL's query; in a form body a space is what it stands for
    entry = _app(scopes=["a", "b"]).model_dump(mode="json", exclude={"slug"})
    entry["oauth2"] = {**entry["oauth2"], "scope_separator": separator}
    app = parse_catalog({"hr": entry}, "test")["hr"]
    form, _ = token_request(app, ClientToken.model_validate(CLIENT))
    assert form["scope"] == sent


def test_a_database_failing_while_a_token_is_fetched_makes_it_unavailable(
    refresher: Refresher, engine: Engine, tenant: Tenant, vault: Vault, tmp_path: Path
) -> None:
    # Given an account of the client credentials grant, and a database that fails once the
    # fetch reads the account
    account = _account(engine, tenant, vault)
    down = create_db_engine(f"sqlite:///{tmp_path}/no/such/dir/passthru.db")
    # When a token is fetched / Then the fetch is unavailable (the call is tried again)
    with pytest.raises(RefreshUnavailable, match=r"database did not answer .*OperationalError"):
        replace(refresher, engine=down).ensure_token(APP, account.id, _seen(engine, vault, account))
