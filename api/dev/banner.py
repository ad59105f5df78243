"""What `passthru dev` prints once its API and a worker are ready: the URLs, the demo API
key, which Redis it uses, where calls really go (PASSTHRU_UPSTREAM_OVERRIDES), and a curl
line that works offline against the demo upstream."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from api.dev import state
from api.dev.demo_data import DEMO_USER
from api.dev.demo_upstream import DEMO_ORIGIN
from api.dev.embedded_redis import EmbeddedRedis
from models.catalog.apps import App, Catalog


@dataclass(frozen=True)
class BannerFacts:
    port: int
    flower_port: int
    api_key: str
    redis: str  # redis_line()
    default_wait_s: float
    overrides: list[str]  # override_lines()


def redis_line(redis: EmbeddedRedis | None, url: str) -> str:
    """Which Redis this run uses (a password in REDIS_URL is not shown)."""
    if redis is None:
        parts = urlsplit(url)
        if parts.password:
            host = parts.netloc.rsplit("@", 1)[1]
            url = parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
        return f"{url}   (from REDIS_URL)"
    if redis.kind == "fakeredis":
        return (
            f"fakeredis on {url}   (in this process: for trying passthru, not for load; "
            "install redis-server for real use, see README)"
        )
    return f"redis-server on {url}   (embedded, in a temp dir: emptied at exit)"


def override_lines(overrides: dict[str, str], catalog: Catalog) -> list[str]:
    """One line per operator override (the demo upstream's own left out): the origin, where
    its calls go instead, and the catalog apps on that origin's host."""
    lines = []
    for origin, target in sorted(overrides.items()):
        if origin == DEMO_ORIGIN:
            continue
        host = urlsplit(origin).hostname or ""
        apps = sorted(app.slug for app in catalog if host in _default_hosts(app))
        shown = ", ".join(apps[:6]) + (", ..." if len(apps) > 6 else "")
        lines.append(f"{origin} -> {target}   (apps: {shown or 'none in the catalog'})")
    return lines


def _default_hosts(app: App) -> list[str]:
    """The hosts an account of `app` reaches with no connection_config: its fixed hosts, or
    those its fields' defaults fill in (`{company}.pipedrive.com` → `api.pipedrive.com`)."""
    try:
        return app.resolve(None)[1]
    except ValueError:  # a field without a default: no host is the app's by itself
        return [h for h in app.allowed_hosts if "{" not in h]


def curl_line(base: str, api_key: str, default_wait_s: float) -> tuple[str, str]:
    """The banner's demo call and what it answers: without `Prefer` when the API waits by
    default (PASSTHRU_DEFAULT_WAIT_S), else with `Prefer: wait=10`."""
    body = json.dumps({"method": "GET", "url": f"{DEMO_ORIGIN}/api/hello?name=passthru"})
    waits_by_default = default_wait_s > 0
    prefer = "" if waits_by_default else "-H 'Prefer: wait=10' "
    curl = (
        f"curl -s -X POST {base}/demo-passthrough-request "
        f"-H {shlex.quote('Authorization: Bearer ' + api_key)} "
        f"-H 'X-User-ID: {DEMO_USER}' -H 'Content-Type: application/json' "
        f"{prefer}-d {shlex.quote(body)}"
    )
    waits, otherwise = (
        (f"{default_wait_s:g} s (PASSTHRU_DEFAULT_WAIT_S)", "with -H 'Prefer: respond-async'")
        if waits_by_default
        else ("10 s (Prefer: wait=10)", "without the Prefer header")
    )
    answers = (
        f"  It waits up to {waits} for the call to end and answers\n"
        f"  200 {{id, status, network_code, output, headers}}; {otherwise}, 202 at once."
    )
    return curl, answers


def _overrides_text(lines: list[str]) -> str:
    if not lines:
        return (
            "  Upstream  the real APIs: no PASSTHRU_UPSTREAM_OVERRIDES (a Slack call reaches "
            "slack.com)\n"
        )
    first, *rest = lines
    return (
        f"  Upstream  {first}\n"
        + "".join(f"            {line}\n" for line in rest)
        + "            (PASSTHRU_UPSTREAM_OVERRIDES; every other app reaches its real API)\n"
    )


def banner(facts: BannerFacts) -> str:
    base = f"http://127.0.0.1:{facts.port}"
    curl, answers = curl_line(base, facts.api_key, facts.default_wait_s)
    return (
        "\n"
        "  passthru is running\n"
        f"  API       {base}\n"
        f"  API docs  {base}/docs\n"
        f"  Console   {base}/console   (sign in with the API key below)\n"
        f"  Flower    http://127.0.0.1:{facts.flower_port}   (user {state.FLOWER_USER}, "
        f"password {state.flower_password()})\n"
        f"  Redis     {facts.redis}\n"
        f"  API key   {facts.api_key}   (demo tenant; user '{DEMO_USER}' has a demo account)\n"
        f"{_overrides_text(facts.overrides)}"
        "\n  Try it (calls the built-in demo upstream, offline):\n\n"
        f"{curl}\n\n"
        f"{answers}\n\n"
        "  Ctrl-C stops everything.\n"
    )
