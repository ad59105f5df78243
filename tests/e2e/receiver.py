"""A webhook receiver for the end-to-end tests: a local HTTP server that keeps what it got
and verifies each event's signature with the independent `standardwebhooks` package."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

from api.dev.embedded_redis import free_port


class Receiver:
    """A webhook receiver on a port of its own; answers `status` and keeps what it got."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 204
        self.got: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self, secret: str) -> list[dict[str, Any]]:
        """Every event received, each verified (raises if any signature is wrong)."""
        with self._lock:
            got = list(self.got)
        verifier = Webhook(secret)
        return [
            {"id": headers["webhook-id"], **verifier.verify(body, headers)} for headers, body in got
        ]
