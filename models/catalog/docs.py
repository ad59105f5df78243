"""`docs/apps.md`, written from the built-in catalog (`passthru apps docs > docs/apps.md`): the
count of apps per category, then one table of every app with its auth styles, its rate
limits and its documentation. A test keeps the committed page equal to what this writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from models.catalog.apps import App
from models.catalog.spec import CATEGORIES, RateLimitSpec

# The stand-in API of `passthru dev`: in the catalog, not an integration.
NOT_LISTED = frozenset({"demo"})
_CREDENTIALS = {
    "oauth2": "OAuth2",
    "client_credentials": "OAuth2 client credentials",
    "api_key": "API key",
    "basic": "username and password",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text.strip() else f"`{text!r}`"


def auth_styles(app: App) -> str:
    """Which credentials fit, and how they go on the wire: `OAuth2 (bearer)`."""
    auth = app.auth
    wire = {
        "bearer": "bearer",
        "header": f"header {_code(auth.name or '')}",
        "query": f"query {_code(auth.param or '')}",
        "basic": f"basic, API key as {auth.api_key_as}" if auth.api_key_as else "basic",
    }[auth.type]
    # Without an OAuth2 entry, a bearer app's "oauth2" credentials are just a token.
    fitting = app.credential_kinds if app.oauth2 else app.credential_kinds - {"oauth2"}
    kinds = ", ".join(_CREDENTIALS[kind] for kind in sorted(fitting))
    return f"{kinds} ({wire})"


def _limit(limit: RateLimitSpec) -> str:
    text = f"{limit.scope} {limit.limit}/{limit.period_s:g} s"
    if limit.burst is not None:
        text += f" (burst {limit.burst})"
    return f"{text} on {_code(limit.path)}" if limit.path else text


def limits(app: App) -> str:
    """The app's rate limits, one short phrase each (`account 100/10 s`), and the headers that
    say when to retry beyond `Retry-After`."""
    parts = [_limit(limit) for limit in app.rate_limits]
    hints = [h for h in (app.retry.reset_header, app.retry.remaining_header) if h]
    if hints:
        parts.append("headers " + ", ".join(map(_code, hints)))
    return "; ".join(parts) or "—"


def _counts(apps: list[App]) -> list[str]:
    counted: Counter[str | None] = Counter(app.category for app in apps)
    rows = ["| category | apps |", "|---|---:|"]
    rows += [f"| {category} | {counted[category]} |" for category in CATEGORIES]
    if counted[None]:
        rows.append(f"| (none) | {counted[None]} |")
    rows.append(f"| **all** | **{len(apps)}** |")
    return rows


def _row(app: App) -> str:
    docs = f"[docs]({app.docs_url})" if app.docs_url else "—"
    cells = [_code(app.slug), app.name, app.category or "—", auth_styles(app), limits(app), docs]
    return "| " + " | ".join(map(_cell, cells)) + " |"


def render(catalog: Iterable[App]) -> str:
    """The page, as Markdown."""
    apps = [app for app in catalog if app.slug not in NOT_LISTED]
    lines = [
        "# Apps",
        "",
        "The built-in catalog (`models/catalog/apps.yaml`), one row per app. This page is "
        "written by `passthru apps docs > docs/apps.md`; a test fails when it is out of date. "
        "`GET /apps` shows the same entries in full (`?category=` and `?q=` select some), and "
        "an operator's `PASSTHRU_APPS_FILE` may replace or add entries. The vendor "
        "documentation each entry was checked against, and the values left out as "
        "unconfirmed, are in [catalog-sources.md](catalog-sources.md).",
        "",
        "## Apps per category",
        "",
        *_counts(apps),
        "",
        "## Every app",
        "",
        "Auth: the credentials that fit, and how they are sent. Limits: what passthru keeps "
        "to per app or per connected account (`on` a path pattern), and the headers beyond "
        "`Retry-After` it reads to know when to try again.",
        "",
        "| app | name | category | auth | limits | docs |",
        "|---|---|---|---|---|---|",
        *(_row(app) for app in apps),
    ]
    return "\n".join(lines) + "\n"
