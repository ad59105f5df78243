"""Turn an upstream answer into the stored `output` and `headers`."""

from __future__ import annotations

import base64
from typing import Any

import orjson

_DROP = {"set-cookie", "set-cookie2"}
# Bodies with fewer brackets than this cannot nest too deep to store; others are checked by
# encoding them once (orjson, which stores them, refuses more than 255 levels): JSON too
# deep to store is kept as text.
MAX_BRACKETS_UNCHECKED = 250
# JSON with more arrays and objects than this is kept as text: parsed, each costs a Python
# object, and `[[],[],...]` would turn a 10 MiB body into a quarter of a GiB.
MAX_JSON_CONTAINERS = 100_000


def public_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Response headers without cookies; repeated headers joined with ', '."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in _DROP:
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _is_text(content_type: str) -> bool:
    return content_type.startswith("text/") or any(
        t in content_type for t in ("json", "xml", "javascript", "x-www-form-urlencoded", "csv")
    )


def decode_output(body: bytes, content_type: str | None) -> Any:
    """JSON when the upstream sent JSON, text for text, {base64, content_type} otherwise."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not body:
        return None
    if "json" in ctype or not ctype:
        containers = body.count(b"[") + body.count(b"{")
        try:
            if containers <= MAX_JSON_CONTAINERS:
                value = orjson.loads(body)
                if containers <= MAX_BRACKETS_UNCHECKED or _storable(value):
                    return value
        except orjson.JSONDecodeError:
            pass
        if "json" in ctype:
            return body.decode("utf-8", errors="replace")
    if not ctype or _is_text(ctype):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            if ctype:
                return body.decode("utf-8", errors="replace")
    return {"base64": base64.b64encode(body).decode(), "content_type": ctype or None}


def _storable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True
