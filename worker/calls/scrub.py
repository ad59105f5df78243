"""One scrubber for every text the worker stores or returns about a call: error messages,
attempt notes, the upstream's answer (body and headers) and what comes back from a token
endpoint. It removes each credential value the call's request carried, in the forms it may
travel in (as is, URL-encoded, JSON-escaped, base64 basic-auth pairs; in raw bytes, in
UTF-16 and UTF-32 as well), whatever the upstream echoes. Stored text also loses NUL and
other control characters and is cut to the size of its column.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode()
# Control characters a database text column or a log line should never carry.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# The charsets an answer's bytes are searched in: UTF-8 (ASCII too), and the wide ones whose
# bytes hide a token from a search in UTF-8.
_CHARSETS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


# A secret made only of these characters travels the same way in every encoding.
_PLAIN = re.compile(r"^[A-Za-z0-9._~-]+$")


_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _forms(secret: str) -> set[str]:
    if _PLAIN.match(secret):
        return {secret}
    quoted = {quote(secret, safe=""), quote_plus(secret)}
    lower = {_ESCAPE.sub(lambda m: m.group(0).lower(), q) for q in quoted}  # %2f as well
    return {secret, secret.replace("/", "\\/"), *quoted, *lower}


class Scrubber:
    """Replaces every form of the given secrets with `[redacted]`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found: set[str] = set()
        for secret in secrets:
            if secret:
                found |= _forms(secret)
        # One pass, longest first: a secret that contains another is removed whole, and
        # what was put in is never searched again.
        self._text = sorted(found, key=len, reverse=True)
        self._utf8 = [form.encode() for form in self._text]
        self._text_re = re.compile("|".join(map(re.escape, self._text))) if found else None
        self._utf8_re = re.compile(b"|".join(map(re.escape, self._utf8))) if found else None
        self._wide: _Wide | None = None  # made when first needed
        # In UTF-16 and UTF-32, a letter of Latin-1 always brings a NUL; others may not.
        self._always_wide = any(ord(c) > 0xFF for form in self._text for c in form)

    def __bool__(self) -> bool:
        return bool(self._text)

    @property
    def longest(self) -> int:
        """The length of the longest form, in bytes (in UTF-32, four per character): how far
        past a cut a secret may reach."""
        return 4 * max((len(form) for form in self._text), default=0)

    def text(self, value: str) -> str:
        if self._text_re is None or not any(secret in value for secret in self._text):
            return value
        return self._text_re.sub(REDACTED, value)

    def bytes(self, value: bytes) -> bytes:
        if self._utf8_re is None:
            return value
        if self._always_wide or b"\0" in value:  # maybe in a wide charset
            self._wide = self._wide or _Wide(self._text)
            return self._wide.sub(value)
        if not any(secret in value for secret in self._utf8):
            return value
        return self._utf8_re.sub(_REDACTED_BYTES, value)

    def headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if not self._text:
            return headers
        return [(self.text(name), self.text(value)) for name, value in headers]

    def value(self, value: Any) -> Any:
        """A decoded answer (JSON, text) without the secrets: JSON escapes (`\\u0041`,
        `\\/`) undone by decoding can rebuild a secret the raw bytes did not show. JSON
        comes back encoded (an `orjson.Fragment`, stored as is and smaller than the objects);
        it is walked only when its encoding shows a secret."""
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, dict | list):
            return value
        try:
            encoded = orjson.dumps(value)
            if any(secret in encoded for secret in self._utf8):
                encoded = orjson.dumps(self._walk(value))
        except orjson.JSONEncodeError:
            return value  # too deep to store: the store refuses it, and says so
        return orjson.Fragment(encoded)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self._walk(v) for k, v in value.items()}
        return value

    def stored(self, value: str, limit: int) -> str:
        """`value` as it may be stored or shown: scrubbed, without control characters, at
        most `limit` characters."""
        clean = _CONTROL.sub("", self.text(value))
        return clean if len(clean) <= limit else clean[: limit - 1] + "…"


class _Wide:
    """The forms of the secrets in every charset of _CHARSETS, each replaced by `[redacted]`
    in its own charset: raw bytes may be in a wide one (an answer in UTF-16 puts a NUL
    after each letter of an echoed token)."""

    def __init__(self, forms: list[str]) -> None:
        self._put = {
            form.encode(charset): REDACTED.encode(charset)
            for form in forms
            for charset in _CHARSETS
        }
        self._forms = sorted(self._put, key=len, reverse=True)
        self._re = re.compile(b"|".join(map(re.escape, self._forms)))

    def sub(self, value: bytes) -> bytes:
        if not any(form in value for form in self._forms):
            return value
        return self._re.sub(lambda found: self._put[found.group(0)], value)


def basic_pair(username: str, password: str) -> list[str]:
    """The forms of a basic-auth pair on the wire: `user:pass` and its base64."""
    pair = f"{username}:{password}"
    return [pair, base64.b64encode(pair.encode()).decode()]


NOTHING = Scrubber()
