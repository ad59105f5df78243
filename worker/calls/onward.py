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


class Scrubbers:
    """The scrubber of each app's and credentials' secrets, made once for a message's calls:
    making one derives every form of each secret and compiles their patterns, about a
    fiftieth of a bulk call's CPU. Keyed by the app and credentials objects themselves
    (kept with their scrubber, so a key never names another's), so credentials renewed
    within the message, or an app reloaded, get a scrubber of their own."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, int], tuple[App, Credentials, Scrubber]] = {}

    def of(self, app: App, credentials: Credentials) -> Scrubber:
        key = (id(app), id(credentials))
        made = self._made.get(key)
        if made is None or made[0] is not app or made[1] is not credentials:
            made = (app, credentials, Scrubber(secrets_of(app, credentials)))
            self._made[key] = made
        return made[2]


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
    scrubbers: Scrubbers | None = None,
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
        scrub=(scrubbers or Scrubbers()).of(app, credentials),
    )
