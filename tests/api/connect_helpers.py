"""What the connect tests share: a catalog of test apps (an OAuth2 app with PKCE, API-key
and basic-auth apps with config fields), an app built on it, and a stand-in token endpoint
(an httpx MockTransport) that checks what a real one would."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

CLIENT_ID = "pt-client"
CLIENT_SECRET = "pt-client-secret-77"
PUBLIC = "https://passthru.test"
REDIRECT = "https://tenant.test/connected?from=pt"
ACCESS = "at-secret-access-0001"
REFRESH = "rt-secret-refresh-0001"

APPS: dict[str, Any] = {
    "acme-oauth": {
        "name": "Acme OAuth",
        "base_url": "https://api.acme.test/v1",
        "allowed_hosts": ["api.acme.test"],
        "auth": {"type": "bearer"},
        "oauth2": {
            "authorize_url": "https://auth.acme.test/authorize",
            "token_url": "https://auth.acme.test/token",
            "scopes": ["read", "write"],
            "scope_separator": ",",
            "pkce": True,
            "authorize_params": {"access_type": "offline"},
            "token_auth": "basic",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    },
    "acme-body": {
        "name": "Acme Body",
        "base_url": "https://api.acme-body.test",
        "allowed_hosts": ["api.acme-body.test"],
        "auth": {"type": "bearer"},
        "oauth2": {
            "authorize_url": "https://auth.acme-body.test/authorize",
            "token_url": "https://auth.acme-body.test/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    },
    "acme-manual": {  # an OAuth2 app with no authorize_url: tokens are given, never asked
        "name": "Acme Manual",
        "base_url": "https://api.acme-manual.test",
        "allowed_hosts": ["api.acme-manual.test"],
        "auth": {"type": "bearer"},
        "oauth2": {
            "token_url": "https://auth.acme-manual.test/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    },
    "acme-key": {
        "name": "Acme Keys",
        "base_url": "https://{subdomain}.acme-key.test/api",
        "allowed_hosts": ["{subdomain}.acme-key.test"],
        "auth": {"type": "header", "name": "X-Api-Key"},
        "connection_config": {"subdomain": {"label": "Your Acme subdomain"}},
    },
    "acme-region": {
        "name": "Acme Regions",
        "base_url": "https://api.{region}.acme-region.test",
        "allowed_hosts": ["api.{region}.acme-region.test"],
        "auth": {"type": "basic"},
        "connection_config": {
            "region": {"label": "Region", "choices": {"us": "us", "eu": "eu"}, "default": "us"}
        },
    },
}


def apps_file(folder: Path) -> Path:
    path = folder / "apps.yaml"
    path.write_text(yaml.safe_dump(APPS))
    return path


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def token_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


@dataclass
class TokenEndpoint:
    """A stand-in token endpoint: checks the client, the redirect URI and the PKCE verifier
    against the challenge it was shown, then answers `answer` (or its own refusal)."""

    challenges: dict[str, str] = field(default_factory=dict)  # code -> challenge
    requests: list[dict[str, str]] = field(default_factory=list)
    answer: Callable[[], httpx.Response] = lambda: httpx.Response(
        200,
        json={
            "access_token": ACCESS,
            "refresh_token": REFRESH,
            "expires_in": 3600,
            "token_type": "Bearer",
        },
    )

    def handler(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append(form)
        basic = request.headers.get("authorization", "")
        client_ok = basic == "Basic " + base64.b64encode(
            f"{CLIENT_ID}:{CLIENT_SECRET}".encode()
        ).decode() or (
            form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
        )
        if not client_ok:
            return httpx.Response(401, json={"error": "invalid_client"})
        if form.get("redirect_uri") != PUBLIC + "/oauth/callback":
            return httpx.Response(400, json={"error": "invalid_grant"})
        challenge = self.challenges.get(form.get("code", ""))
        if challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).decode().rstrip("=") != challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
        return self.answer()

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))
