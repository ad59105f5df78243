"""Hostile answers shared by tests: compression bombs made without ever holding them
decoded (a 256 MiB bomb is about 400 bytes, made in half a second)."""

from __future__ import annotations

import brotli  # type: ignore[import-untyped]

MIB = 1024 * 1024


def brotli_bomb(decoded_bytes: int) -> bytes:
    """Brotli bytes that decode to `decoded_bytes` zero bytes."""
    compressor = brotli.Compressor(quality=5)
    zeros = bytes(MIB)
    parts = [compressor.process(zeros) for _ in range(decoded_bytes // MIB)]
    parts.append(compressor.process(bytes(decoded_bytes % MIB)))
    parts.append(compressor.finish())
    return b"".join(parts)
