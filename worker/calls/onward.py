"""Build the onward request for a call: URL, headers, body, the credentials to inject and
the scrubber that keeps them out of everything stored about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from models.accounts.credentials import Credentials
from models.catalog.apps import App
from models.net.decompress import ACCEPT_ENCODING
from models.net.urls import allowed_ports
from worker.calls.auth import auth_for, secrets_of
from worker.calls.scrub import NOTHING, Scrubber
from worker.calls.timeouts import Timeouts

USER_AGENT = "passthru/0.1"


@dataclass(frozen=True)
class OnwardRequest:
    method: str
    url: str  # the URL the caller asked for (before any operator override)
    headers: dict[str, str]
    content: bytes | None
    allowed_hosts: tuple[str, ...]
    auth: httpx.Auth
    timeouts: Timeouts
    pause_key: str | None = None  # the rate-limit pause this request obeys
    allowed_ports: frozenset[int] = frozenset({443})
    scrub: Scrubber = NOTHING  # removes the account's secrets from what is stored


def encode_body(body: Any, headers: dict[str, str]) -> bytes | None:
    """JSON unless the caller sent a string with its own Content-Type (form, XML, text)."""
    if body is None:
        return None
    has_type = any(k.lower() == "content-type" for k in headers)
    if isinstance(body, str) and has_type:
        return body.encode()
    if not has_type:
        headers["Content-Type"] = "application/json"
    return orjson.dumps(body)


def build_request(
    *,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    body: Any,
    app: App,
    base_url: str,
    allowed_hosts: list[str],
    credentials: Credentials,
    timeouts: Timeouts,
) -> OnwardRequest:
    merged = {"User-Agent": USER_AGENT, "Accept": "application/json", **app.default_headers}
    merged.update(headers or {})
    # passthru decodes answers itself, under a cap: it offers exactly the encodings it can
    # undo, whatever the caller asked for.
    for name in [k for k in merged if k.lower() == "accept-encoding"]:
        del merged[name]
    merged["Accept-Encoding"] = ACCEPT_ENCODING
    content = encode_body(body, merged)
    return OnwardRequest(
        method=method,
        url=url,
        headers=merged,
        content=content,
        allowed_hosts=tuple(allowed_hosts),
        auth=auth_for(app.auth, credentials),
        timeouts=timeouts,
        allowed_ports=allowed_ports(base_url),
        scrub=Scrubber(secrets_of(app, credentials)),
    )
