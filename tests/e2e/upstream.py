"""A real local HTTP server standing in for third-party APIs (Slack, Pipedrive, ...).

It records every request it receives and answers from a script: by default a few canned
Slack and Pipedrive endpoints, and an API of the client credentials grant (its token
endpoint and one resource); tests add their own answers per (method, path).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SLACK_CONVERSATIONS = {
    "ok": True,
    "channels": [
        {"id": "C012AB3CD", "name": "general", "is_channel": True},
        {"id": "C061EG9T2", "name": "random", "is_channel": True},
    ],
    "response_metadata": {"next_cursor": "dGVhbTpDMDYxRkE1UEI="},
}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, or bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False  # close the connection without answering


Responder = Callable[[Seen], Reply]


def _pipedrive_person(seen: Seen) -> Reply:
    data = seen.json() if seen.body else {}
    return Reply(200, {"success": True, "data": {"id": 1041, **data}})


class ClientCredentialsApi:
    """A token endpoint of the client credentials grant (RFC 6749 section 4.4) that knows
    one client, sent as HTTP Basic, and hands out a new token each time; and a resource
    that takes only the tokens it handed out and has not revoked."""

    CLIENT_ID = "e2e-company"
    CLIENT_SECRET = "e2e-company-secret/7"
    TOKEN_PATH = "/ccapp/token"
    ITEMS_PATH = "/ccapp/items"

    def __init__(self) -> None:
        self.issued: list[str] = []
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    def revoke_all(self) -> None:
        with self._lock:
            self._revoked.update(self.issued)

    def token(self, seen: Seen) -> Reply:
        pair = f"{self.CLIENT_ID}:{self.CLIENT_SECRET.replace('/', '%2F')}"
        if seen.headers.get("authorization") != "Basic " + base64.b64encode(pair.encode()).decode():
            return Reply(401, {"error": "invalid_client"})
        form = parse_qs(seen.body.decode())
        if form.get("grant_type") != ["client_credentials"] or form.get("scope") != ["items"]:
            return Reply(400, {"error": "invalid_request"})
        with self._lock:
            token = f"cc-token-{len(self.issued) + 1}"
            self.issued.append(token)
        return Reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def items(self, seen: Seen) -> Reply:
        token = seen.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            good = token in self.issued and token not in self._revoked
        return Reply(200, {"items": [1, 2]}) if good else Reply(401, {"error": "invalid_token"})


class Upstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], list[Responder]] = {}
        self.client_credentials = ClientCredentialsApi()
        cc = self.client_credentials
        self._defaults: dict[tuple[str, str], Responder] = {
            ("GET", "/api/conversations.list"): lambda _: Reply(200, SLACK_CONVERSATIONS),
            ("POST", "/api/v2/persons"): _pipedrive_person,
            ("POST", cc.TOKEN_PATH): cc.token,
            ("GET", cc.ITEMS_PATH): cc.items,
        }
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.time(),
                )
                reply = upstream._record_and_reply(seen)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else (b"" if reply.body is None else json.dumps(reply.body).encode())
                )
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the default 5 drops bursts of connections
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Upstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, method: str, path: str, *replies: Reply | Responder) -> None:
        """Answer the next requests to (method, path) with `replies`, in order; the last
        one repeats."""
        responders = [r if callable(r) else (lambda _, r=r: r) for r in replies]
        with self._lock:
            self._scripts[(method, path)] = responders

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def _record_and_reply(self, seen: Seen) -> Reply:
        key = (seen.method, seen.path)
        with self._lock:
            self.seen.append(seen)
            script = self._scripts.get(key)
            responder = None
            if script:
                responder = script.pop(0) if len(script) > 1 else script[0]
        if responder is None:
            responder = self._defaults.get(key) or (
                lambda s: Reply(404, {"error": "not_found", "path": s.path})
            )
        return responder(seen)
