"""The console's rate limits and webhook endpoint pages over HTTP: the same numbers as `GET
/rate-limits`, pauses, a Redis away; setting the URL as `PUT /webhook-endpoint` does, its
refusals, rotating the secret, the secret shown once; CSRF, tenancy and hostile forms."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi import FastAPI
from markupsafe import escape
from sqlalchemy import Engine

from api.account_pages import PAGE_SIZE
from api.dev.embedded_redis import free_port
from models.accounts.tenants import create_tenant
from models.catalog.apps import App, Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import WebhookEndpoint
from models.ratelimit.rules import parse_rate, pause_key, rules_for, tenant_cap_rule
from models.ratelimit.store import Ask, MemoryLimiter, RedisLimiter
from models.webhooks.signing import signing_secrets
from tests.api.conftest import make_accounts
from tests.console.conftest import NOW_MS, Tenancy, TestClient, sign_in
from tests.worker.factories import make_account

HOOK = "https://hooks.example.com/passthru"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
ROW = re.compile(
    r'<tr class="limit">.*?<span class="n">(\d+)</span> of (\d+) per .*?'
    r'class="wait">([^<]*)</td>',
    re.S,
)


@pytest.fixture
def tenant_cap(console_app: FastAPI) -> Iterator[str]:
    kept = console_app.state.settings
    console_app.state.settings = kept.model_copy(update={"tenant_rate_limit": "10/1"})
    yield "10/1"
    console_app.state.settings = kept


def slack(console_app: FastAPI) -> App:
    catalog: Catalog = console_app.state.catalog
    app = catalog.get("slack")
    assert app is not None
    return app


def book(console_app: FastAPI, limiter: MemoryLimiter, tenancy: Tenancy, calls: int) -> str:
    """`calls` slots of the tenancy's Slack account booked on its conversations limit; the
    account's pause key."""
    app = slack(console_app)
    rules = rules_for(
        app,
        tenant_id=tenancy.tenant.id,
        account_id=tenancy.account.id,
        path="/api/conversations.list",
    )
    key = pause_key(app, tenancy.account.id)
    limiter.book_many([Ask(rules, key)] * calls, near_ms=600_000, horizon_ms=600_000)
    return key


def page(client: TestClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    text: str = response.text
    return text


def wait_shown(ms: int) -> str:
    return "now" if ms == 0 else (f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s")


# --- rate limits ---------------------------------------------------------------------------


def test_the_rate_limits_page_shows_the_numbers_of_get_rate_limits(
    console_app: FastAPI,
    browser_client: TestClient,
    tenancy: Tenancy,
    limiter: MemoryLimiter,
    tenant_cap: str,
) -> None:
    # Given a Slack account with 3 calls booked, and 4 calls booked on the tenant's bulk lane
    book(console_app, limiter, tenancy, 3)
    cap = parse_rate(tenant_cap)
    assert cap is not None
    rule = tenant_cap_rule(cap, tenancy.tenant.id, "bulk")
    limiter.book_many([Ask([rule], "pause")] * 4, near_ms=60_000, horizon_ms=60_000)
    sign_in(browser_client, tenancy.key)

    # When the page and the API are read
    html = page(browser_client, "/console/rate-limits")
    api = browser_client.get("/rate-limits", headers={"Authorization": f"Bearer {tenancy.key}"})
    assert api.status_code == 200, api.text

    # Then each limit's use, size and wait on the page are the API's, in its order
    [item] = api.json()["items"]
    section = html.split(f'id="limits-{tenancy.account.id}"')[1].split("</article>")[0]
    expected = [
        (str(limit["in_use"]), str(limit["limit"]), wait_shown(limit["next_free_in_ms"]))
        for limit in item["limits"]
    ]
    assert ROW.findall(section) == expected
    assert ("3", "20", "9000 ms") in expected  # the API's own test's numbers
    assert "Paused" not in section
    # the bar's width is the use's share of the limit (3 of 20)
    assert 'class="seg seg-use" x="0.0" y="0" width="15.0"' in section
    # and the operator's cap, per lane
    lanes = api.json()["tenant_cap"]["lanes"]
    assert lanes["bulk"] == {"in_use": 4, "next_free_in_ms": 400}
    bulk = html.split('class="lane lane-bulk"')[1].split("</tr>")[0]
    assert '<span class="n">4</span> of 10 per 1 s' in bulk
    assert 'class="wait">400 ms<' in bulk
    assert 'class="wait">now<' in html.split('class="lane lane-interactive"')[1]


def test_a_paused_account_shows_its_pause(
    console_app: FastAPI, browser_client: TestClient, tenancy: Tenancy, limiter: MemoryLimiter
) -> None:
    limiter.pause(pause_key(slack(console_app), tenancy.account.id), 30_000)
    sign_in(browser_client, tenancy.key)
    html = page(browser_client, "/console/rate-limits")
    section = html.split(f'id="limits-{tenancy.account.id}"')[1].split("</article>")[0]
    assert "Paused</strong> until" in section
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime((NOW_MS + 30_000) // 1000))
    assert until in section
    assert "(30.0 s from now)" in section


def test_no_account_with_limits_is_an_empty_state(
    browser_client: TestClient, engine: Engine, vault: Vault, limiter: MemoryLimiter
) -> None:
    tenant, key = create_tenant(engine, "console-no-limits")
    make_account(engine, tenant, vault, app="demo")  # an app that declares no limit
    sign_in(browser_client, key)
    html = page(browser_client, "/console/rate-limits")
    assert "No connected account has rate limits or a pause" in html
    assert 'class="card limits"' not in html
    assert "tenant's cap" not in html  # no PASSTHRU_TENANT_RATE_LIMIT set


LIMITS_OF = re.compile(r'<article class="card limits" id="limits-(ca_\w+)">')
NEXT_LIMITS = re.compile(r'<a href="(/console/rate-limits\?cursor=[^"]+)" rel="next">Next</a>')


def test_the_rate_limits_page_reads_a_page_of_accounts_at_a_time(
    browser_client: TestClient, tenancy: Tenancy, limiter: MemoryLimiter
) -> None:
    # Given more Slack accounts (its app declares limits) than the API reads at once, and a
    # demo account (no limits) among them
    made = [tenancy.account.id, *make_accounts(tenancy.engine, tenancy.tenant, PAGE_SIZE + 2)]
    demo = make_accounts(tenancy.engine, tenancy.tenant, 1, app=lambda i: "demo")
    sign_in(browser_client, tenancy.key)
    # When the page is read, then the page its Next link leads to
    first = page(browser_client, "/console/rate-limits")
    link = NEXT_LIMITS.search(first)
    assert link
    second = page(browser_client, link.group(1))
    # Then each Slack account is shown once, newest first, and the demo one on neither
    shown = LIMITS_OF.findall(first) + LIMITS_OF.findall(second)
    assert shown == made
    assert demo[0] not in first + second
    assert NEXT_LIMITS.search(second) is None
    assert 'href="/console/rate-limits">Back to the newest' in second
    # And a cursor no page gave is a 400 page naming it
    for cursor in ("nope", "%3Cscript%3E", "x" * 600):
        refused = page(browser_client, f"/console/rate-limits?cursor={cursor}", 400)
        assert "<strong>cursor</strong>" in refused


def test_redis_away_is_a_503_page_naming_the_error_class_only(
    console_app: FastAPI, browser_client: TestClient, tenancy: Tenancy
) -> None:
    # Given a limiter whose Redis is a closed port (sessions' Redis still answers)
    kept = console_app.state.limiter
    port = free_port()
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    console_app.state.limiter = RedisLimiter(client)
    try:
        sign_in(browser_client, tenancy.key)
        html = page(browser_client, "/console/rate-limits", 503)
    finally:
        console_app.state.limiter = kept
        client.close()
    assert "<strong>redis</strong>" in html
    assert "(ConnectionError)" in html
    assert str(port) not in html
    assert "127.0.0.1" not in html


# --- the webhook endpoint ------------------------------------------------------------------


def stored_secrets(tenancy: Tenancy, vault: Vault) -> list[str]:
    with session_scope(tenancy.engine) as session:
        endpoint = session.get(WebhookEndpoint, tenancy.tenant.id)
        assert endpoint is not None
        return signing_secrets(
            vault, endpoint.secrets_enc, time.time(), tenant_id=tenancy.tenant.id
        )


def api_endpoint(client: TestClient, tenancy: Tenancy) -> dict[str, object]:
    response = client.get("/webhook-endpoint", headers={"Authorization": f"Bearer {tenancy.key}"})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_set_the_url_and_see_the_secret_once(
    browser_client: TestClient, tenancy: Tenancy, vault: Vault
) -> None:
    token = sign_in(browser_client, tenancy.key)
    assert "No webhook URL is set" in page(browser_client, "/console/webhook")
    assert "Rotate secret" not in page(browser_client, "/console/webhook")

    # Saving makes the endpoint and its secret: the answer (a 200, no redirect) shows it
    saved = browser_client.post("/console/webhook", data={"csrf_token": token, "url": HOOK})
    assert saved.status_code == 200
    assert saved.headers["cache-control"] == "no-store"
    [secret] = SECRET.findall(saved.text)
    assert stored_secrets(tenancy, vault) == [secret]
    assert "will not be shown again" in saved.text
    assert api_endpoint(browser_client, tenancy)["url"] == HOOK

    # A later GET shows the URL, never the secret
    later = page(browser_client, "/console/webhook")
    assert HOOK in later
    assert "whsec_" not in later
    assert secret not in later

    # Saving another URL makes no secret: a redirect to the page, which shows none
    other = HOOK + "/v2"
    again = browser_client.post("/console/webhook", data={"csrf_token": token, "url": other})
    assert (again.status_code, again.headers["location"]) == (303, "/console/webhook")
    assert "whsec_" not in again.text
    assert api_endpoint(browser_client, tenancy)["url"] == other
    assert stored_secrets(tenancy, vault) == [secret]
    assert "whsec_" not in page(browser_client, "/console/webhook")


def test_rotating_shows_the_new_secret_once_and_the_old_one_keeps_signing(
    browser_client: TestClient, tenancy: Tenancy, vault: Vault
) -> None:
    token = sign_in(browser_client, tenancy.key)
    saved = browser_client.post("/console/webhook", data={"csrf_token": token, "url": HOOK})
    [old] = SECRET.findall(saved.text)
    rotated = browser_client.post("/console/webhook/rotate-secret", data={"csrf_token": token})
    assert rotated.status_code == 200
    [new] = SECRET.findall(rotated.text)
    assert new != old
    assert stored_secrets(tenancy, vault) == [new, old]
    assert "The old secret keeps signing for 24 hours" in rotated.text
    assert "will not be shown again" in rotated.text
    later = page(browser_client, "/console/webhook")
    assert "whsec_" not in later
    assert "Rotate secret" in later


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.7/hook",
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "ftp://hooks.example.com/in",
        "not a url",
    ],
)
def test_a_url_the_api_refuses_is_the_apis_400_page_naming_url(
    browser_client: TestClient, tenancy: Tenancy, url: str
) -> None:
    token = sign_in(browser_client, tenancy.key)
    api = browser_client.put(
        "/webhook-endpoint",
        json={"url": url},
        headers={"Authorization": f"Bearer {tenancy.key}"},
    )
    assert api.status_code == 400
    [detail] = api.json()["error_details"]
    response = browser_client.post("/console/webhook", data={"csrf_token": token, "url": url})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert f"<strong>url</strong>: {escape(detail['message'])}" in response.text
    assert "whsec_" not in response.text
    assert "No webhook URL is set" in page(browser_client, "/console/webhook")


def test_the_webhook_posts_need_the_csrf_token(
    console_app: FastAPI,
    browser_client: TestClient,
    tenancy: Tenancy,
    new_tenancy: Callable[[], Tenancy],
) -> None:
    token = sign_in(browser_client, tenancy.key)
    with TestClient(console_app, follow_redirects=False) as other:
        foreign = sign_in(other, new_tenancy().key)
    for bad in (None, "0" * 64, token[:-1], foreign):
        data = {} if bad is None else {"csrf_token": bad}
        response = browser_client.post("/console/webhook", data={**data, "url": HOOK})
        assert response.status_code == 403
        assert "whsec_" not in response.text
        response = browser_client.post("/console/webhook/rotate-secret", data=data)
        assert response.status_code == 403
    assert "No webhook URL is set" in page(browser_client, "/console/webhook")
    # and once the endpoint exists, a forged rotation leaves its secret alone
    browser_client.post("/console/webhook", data={"csrf_token": token, "url": HOOK})
    before = browser_client.get(
        "/webhook-endpoint", headers={"Authorization": f"Bearer {tenancy.key}"}
    )
    assert (
        browser_client.post(
            "/console/webhook/rotate-secret", data={"csrf_token": foreign}
        ).status_code
        == 403
    )
    after = browser_client.get(
        "/webhook-endpoint", headers={"Authorization": f"Bearer {tenancy.key}"}
    )
    assert before.json()["updated_at"] == after.json()["updated_at"]


def test_a_second_tenant_sees_neither_the_firsts_endpoint_nor_its_limits(
    console_app: FastAPI,
    browser_client: TestClient,
    new_tenancy: Callable[[], Tenancy],
    vault: Vault,
    limiter: MemoryLimiter,
) -> None:
    first, second = new_tenancy(), new_tenancy()
    book(console_app, limiter, first, 3)
    with TestClient(console_app, follow_redirects=False) as first_browser:
        token = sign_in(first_browser, first.key)
        first_browser.post("/console/webhook", data={"csrf_token": token, "url": HOOK})
    [secret] = stored_secrets(first, vault)
    token = sign_in(browser_client, second.key)
    webhook = page(browser_client, "/console/webhook")
    assert HOOK not in webhook
    assert "No webhook URL is set" in webhook
    limits = page(browser_client, "/console/rate-limits")
    assert first.account.id not in limits
    assert second.account.id in limits
    assert '<span class="n">3</span>' not in limits
    # The second tenant has no endpoint to rotate: a 404 page; the first's is untouched
    rotated = browser_client.post("/console/webhook/rotate-secret", data={"csrf_token": token})
    assert rotated.status_code == 404
    assert stored_secrets(first, vault) == [secret]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"url=https://hooks.example.com/" + b"x" * 3000, "url"),
        (b"url=https://hooks.example.com/%00", "url"),
        (b"url=%00", "url"),
        (b"url=javascript:alert(1)", "url"),
        (b"url=https://%3Cscript%3E.example.com/", "url"),
        (b"url=\xff\xfe", "body"),
        (b"&".join(b"f%d=x" % i for i in range(50)), "body"),
    ],
)
def test_hostile_webhook_forms_are_a_clear_4xx(
    browser_client: TestClient, tenancy: Tenancy, body: bytes, field: str
) -> None:
    token = sign_in(browser_client, tenancy.key)
    for path in ("/console/webhook", "/console/webhook/rotate-secret"):
        response = browser_client.post(
            path,
            content=f"csrf_token={token}&".encode() + body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if path.endswith("rotate-secret") and field == "url":
            assert response.status_code == 404  # the url is not read; there is no endpoint
            continue
        assert response.status_code == 400, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert f"<strong>{field}</strong>" in response.text
        assert "<script>" not in response.text.split("<main>")[1]
    assert "No webhook URL is set" in page(browser_client, "/console/webhook")


def test_a_disabled_endpoint_says_why_and_saving_enables_it(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    token = sign_in(browser_client, tenancy.key)
    browser_client.post("/console/webhook", data={"csrf_token": token, "url": HOOK})
    with session_scope(tenancy.engine) as session:
        endpoint = session.get(WebhookEndpoint, tenancy.tenant.id)
        assert endpoint is not None
        endpoint.disabled_at = endpoint.updated_at
        endpoint.disabled_reason = "410 Gone from the receiver"
    html = page(browser_client, "/console/webhook")
    assert "Disabled</strong>" in html
    assert "410 Gone from the receiver" in html
    saved = browser_client.post("/console/webhook", data={"csrf_token": token, "url": HOOK})
    assert saved.status_code == 303
    assert api_endpoint(browser_client, tenancy)["enabled"] is True
    assert "Disabled</strong>" not in page(browser_client, "/console/webhook")
