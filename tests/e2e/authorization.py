"""A stand-in OAuth2 authorization server on 127.0.0.1, for the connect pages' browser tests.

`GET /authorize` checks the client id, the redirect URI and the PKCE challenge method, and
shows a page with **Allow** and **Deny** links back to the redirect URI (a code, or
`error=access_denied`). `POST /token` checks the client (HTTP Basic), the redirect URI, the
code (once) and the PKCE verifier against the challenge it was shown, then hands out tokens.
`GET /tenant/back` stands in for the tenant's page the browser is sent back to.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from api.dev.embedded_redis import free_port


@dataclass
class Grant:
    challenge: str
    redirect_uri: str
    used: bool = False


@dataclass
class AuthorizationServer:
    client_id: str
    client_secret: str
    redirect_uri: str
    port: int = field(default_factory=free_port)
    grants: dict[str, Grant] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)  # access tokens handed out
    refusals: list[str] = field(default_factory=list)  # why a request was refused

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AuthorizationServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/authorize":
                    self._answer(*server.authorize(query))
                elif parts.path == "/tenant/back":
                    self._answer(
                        200, "text/html", f"<h1>Back at the tenant</h1>{html.escape(parts.query)}"
                    )
                else:
                    self._answer(404, "text/plain", "not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = server.token(form, self.headers.get("authorization", ""))
                self._answer(status, "application/json", json.dumps(body))

            def _answer(self, status: int, kind: str, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _refuse(self, why: str) -> tuple[int, str, str]:
        self.refusals.append(why)
        return 400, "text/plain", why

    def authorize(self, query: dict[str, str]) -> tuple[int, str, str]:
        if query.get("client_id") != self.client_id:
            return self._refuse("unknown client_id")
        if query.get("redirect_uri") != self.redirect_uri:
            return self._refuse("redirect_uri not registered")
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return self._refuse("code with PKCE S256 only")
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(query.get("code_challenge", ""), query["redirect_uri"])
        back = query["redirect_uri"] + "?"
        allow = back + urlencode({"code": code, "state": query.get("state", "")})
        deny = back + urlencode({"error": "access_denied", "state": query.get("state", "")})
        page = (
            "<h1>Allow passthru?</h1>"
            f"<p>Scopes: {html.escape(query.get('scope', ''))}</p>"
            f'<a href="{html.escape(allow)}">Allow</a> <a href="{html.escape(deny)}">Deny</a>'
        )
        return 200, "text/html", page

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            self.refusals.append("client authentication failed")
            return 401, {"error": "invalid_client"}
        grant = self.grants.get(form.get("code", ""))
        if grant is None or grant.used or form.get("redirect_uri") != grant.redirect_uri:
            self.refusals.append("unknown or used code, or another redirect_uri")
            return 400, {"error": "invalid_grant"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).decode().rstrip("=") != grant.challenge:
            self.refusals.append("the PKCE verifier does not match")
            return 400, {"error": "invalid_grant"}
        grant.used = True
        token = f"e2e-connected-{secrets.token_hex(8)}"
        self.issued.append(token)
        return 200, {
            "access_token": token,
            "refresh_token": f"r-{token}",
            "expires_in": 3600,
            "token_type": "Bearer",
        }
