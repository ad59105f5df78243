"""A TCP forwarder the end-to-end tests can cut: a server taken away from a stack's processes
without touching the server itself (the machine's shared Postgres, which tests must not stop).

`cut()` is what a server that crashed or is restarting looks like to its clients, the host
still up:

- every connection through the proxy is reset (RST on the client's side): a query in flight
  fails at once, as when the server process dies under it;
- new connections are refused (ECONNREFUSED): nothing listens on the port, as on a host
  whose server is down.

A blackhole (a network partition: packets dropped, nothing answered) is the other kind of
outage, and not the one modelled here: clients would sit on their sockets until the
kernel's or the driver's timeouts, which is a test of those timeouts, not of what the
service does when its database answers "no".

While cut, the port stays bound by a socket that does not listen, so no other socket (an
outgoing connection's ephemeral port included) takes it before `restore()` listens again.
The proxy runs an asyncio loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 65536


def _bound(port: int) -> socket.socket:
    """A socket on 127.0.0.1:`port` (0: any free port), bound, not yet listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a RST, not a FIN: its peer's next read or write fails."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target` until `cut()`; `restore()` forwards again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._placeholder = _bound(0)  # holds the port, cut or not
        self.port: int = self._placeholder.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()  # the stack's side of each
        self._servers: set[asyncio.StreamWriter] = set()  # the target's side
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0  # one more at each cut
        self.accepted = 0  # connections forwarded, in all
        self.reset = 0  # connections reset by cuts, in all

    def start(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def cut(self) -> int:
        """Refuse new connections and reset every open one; how many were reset."""
        return self._run(self._cut())

    def restore(self) -> None:
        """Listen and forward again, on the same port."""
        self._run(self._listen())

    def stop(self) -> None:
        self._run(self._cut())
        self._run(self._cancel_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._placeholder.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = _bound(self.port)
        sock.listen(1024)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def _cut(self) -> int:
        self._generation += 1
        if self._server is not None:
            self._server.close()  # the listening socket is closed: connects are refused
            self._server = None
        clients, servers = self._clients, self._servers
        self._clients, self._servers = set(), set()
        for writer in (*clients, *servers):
            _reset(writer)
        self.reset += len(clients)
        return len(clients)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        generation = self._generation
        self._clients.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)
                return
            if generation != self._generation:  # cut while connecting
                _reset(writer)
                _reset(up_writer)
                return
            self._servers.add(up_writer)
            self.accepted += 1
            await asyncio.gather(
                self._pump(reader, up_writer, writer), self._pump(up_reader, writer, up_writer)
            )
            self._servers.discard(up_writer)
        finally:
            self._clients.discard(writer)
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, to: asyncio.StreamWriter, back: asyncio.StreamWriter
    ) -> None:
        """Copy `reader` to `to` until either side ends; then close both (a reset side stays
        reset: closing an aborted transport does nothing)."""
        try:
            while data := await reader.read(CHUNK):
                to.write(data)
                await to.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            to.close()
            back.close()
