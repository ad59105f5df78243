"""Answers decoded as they arrive, never beyond a limit.

gzip, deflate and br are undone chunk by chunk, and each step of a decoder yields at most
STEP_BYTES, so the reader stops the moment its cap is reached: a compression bomb (a few
hundred bytes that inflate to gigabytes) is cut at the cap without ever being held whole.
An answer in an encoding passthru cannot undo (one it did not offer, or a pile of them) is
refused like a broken one: its body is never kept, since nothing could look inside it for a
credential the upstream echoed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

import brotli  # type: ignore[import-untyped]

# The most one decoding step may produce (brotli may go a little past it).
STEP_BYTES = 64 * 1024
# What onward requests offer: exactly the encodings undone here.
ACCEPT_ENCODING = "gzip, deflate, br"


class DecodeError(Exception):
    """The body is not valid in the encoding its Content-Encoding names."""


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of `data`, each at most about STEP_BYTES, produced lazily."""
        ...


class _Zlib:
    """gzip (`wbits=16+MAX_WBITS`, several members allowed) or zlib-wrapped deflate."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while True:
                out = self._d.decompress(data, STEP_BYTES)
                if out:
                    yield out
                data = self._d.unconsumed_tail
                if self._d.eof and self._d.unused_data.strip(b"\0"):
                    data = self._d.unused_data  # another gzip member follows
                    self._d = zlib.decompressobj(self._wbits)
                    continue
                if not data and len(out) < STEP_BYTES:
                    return
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None


class _Deflate:
    """`deflate` is zlib-wrapped by the spec, raw in some servers: the first two bytes say
    which (a zlib header names method 8 and is a multiple of 31)."""

    def __init__(self) -> None:
        self._inner: _Zlib | None = None
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
            self._inner = _Zlib(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        yield from self._inner.feed(data)


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self._d.process(data, output_buffer_limit=STEP_BYTES)
            if out:
                yield out
            while not self._d.can_accept_more_data():
                out = self._d.process(b"", output_buffer_limit=STEP_BYTES)
                if not out:
                    return
                yield out
        except brotli.error as exc:
            raise DecodeError(str(exc)) from None


class _Chain:
    """Several encodings, undone in the reverse of the order they were applied."""

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._through(0, data)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._decoders):
            yield data
            return
        for piece in self._decoders[index].feed(data):
            yield from self._through(index + 1, piece)


_MAKERS: dict[str, Callable[[], Decoder]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": _Deflate,
    "br": _Brotli,
}


# More encodings stacked than this are not undone: no server stacks more than two, and each
# layer costs a decoder's memory before a byte arrives.
MAX_CODINGS = 2


class _Refused:
    """The decoder of an encoding not undone here: its first piece is a DecodeError."""

    def __init__(self, why: str) -> None:
        self._why = why

    def feed(self, data: bytes) -> Iterator[bytes]:
        raise DecodeError(self._why)


def decoder_for(content_encoding: str | None) -> Decoder | None:
    """The decoder for a Content-Encoding header; None for identity. For an encoding
    passthru does not know, or more than MAX_CODINGS, one that refuses the body."""
    names = [n.strip().lower() for n in (content_encoding or "").split(",", MAX_CODINGS + 1)]
    names = [n for n in names if n and n != "identity"]
    if not names:
        return None
    if len(names) > MAX_CODINGS:
        return _Refused(f"more than {MAX_CODINGS} content codings")
    if unknown := [n for n in names if n not in _MAKERS]:
        return _Refused(f"content coding {unknown[0][:40]!r} is not undone here")
    decoders: list[Decoder] = [_MAKERS[n]() for n in reversed(names)]
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)
