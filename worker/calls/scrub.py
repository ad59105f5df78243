"""One scrubber for every text the worker stores or returns about a call: error messages,
attempt notes, the upstream's answer (body and headers) and what comes back from a token
endpoint. It removes each credential value the call's request carried, in the forms it may
travel in (as is, URL-encoded, JSON-escaped, base64 basic-auth pairs; in raw bytes, in
UTF-16 and UTF-32 as well), whatever the upstream echoes. Stored text also loses NUL and
other control characters and is cut to the size of its column.
"""

from __future__ import annotations

import base64
import json
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


_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-f]{4})")


def _forms(secret: str) -> set[str]:
    if _PLAIN.match(secret):
        return {secret}
    quoted = {quote(secret, safe=""), quote_plus(secret)}
    lower = {_ESCAPE.sub(lambda m: m.group(0).lower(), q) for q in quoted}  # %2f as well
    return {secret, *_json_forms(secret), *quoted, *lower}


def _json_forms(secret: str) -> set[str]:
    """`secret` inside a JSON string, as encoders write it: `"` and `\\` escaped, other
    characters as UTF-8 or as `\\u00e9` (in either case of hex), `/` as is or as `\\/`."""
    as_utf8 = orjson.dumps(secret)[1:-1].decode()
    as_ascii = json.dumps(secret)[1:-1]
    upper = _UNICODE_ESCAPE.sub(lambda m: "\\u" + m.group(1).upper(), as_ascii)
    forms = {as_utf8, as_ascii, upper}
    return forms | {form.replace("/", "\\/") for form in forms}


# A `\uXXXX` escape, or an escaped backslash (so that `\\u0041` is read as a backslash
# and `u0041`); the other escapes (`\"`, `\\`, `\/`) are among a secret's forms already.
_UNICODE_OR_BACKSLASH = re.compile(r"\\\\|\\u([0-9a-fA-F]{4})")


def unicode_unescaped(text: str) -> str:
    """`text` with its JSON `\\uXXXX` escapes undone, read left to right; an escaped
    surrogate pair becomes its character, a lone one U+FFFD, so that the result can be
    stored."""
    undone = _UNICODE_OR_BACKSLASH.sub(
        lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(0), text
    )
    return undone.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


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
            return self._text_or_json_text(value)
        if not isinstance(value, dict | list):
            return value
        try:
            encoded = orjson.dumps(value)
            if any(secret in encoded for secret in self._utf8):
                encoded = orjson.dumps(self._walk(value))
        except orjson.JSONEncodeError:
            return value  # too deep to store: the store refuses it, and says so
        return orjson.Fragment(encoded)

    def _text_or_json_text(self, value: str) -> str:
        """Text, which may be JSON kept as text (too large or too deep to decode, or not
        quite JSON): a secret its `\\u` escapes spell out (`\\u0031`) counts as one shown.
        Found so, the text is kept with those escapes undone and the secret removed."""
        scrubbed = self.text(value)
        if self._text_re is None or "\\u" not in scrubbed:
            return scrubbed
        unescaped = unicode_unescaped(scrubbed)
        if not any(secret in unescaped for secret in self._text):
            return scrubbed
        return self._text_re.sub(REDACTED, unescaped)

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
