"""Webhook signatures, per the Standard Webhooks spec (https://www.standardwebhooks.com/).

A webhook carries three headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature`, a space-separated list of `v1,<base64>` signatures. Each is the
HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the secret's bytes: the base64 after
the `whsec_` prefix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from passthru_client._errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE_S = 300.0

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "WebhookVerificationError",
    "sign_webhook",
    "verify_webhook",
]


def _key(secret: str | bytes) -> bytes:
    """The HMAC key: raw bytes as given, or the base64 of a `whsec_...` string decoded."""
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                "the webhook secret must be 'whsec_' followed by base64 (as passthru gives it)"
            ) from exc
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign_webhook(
    body: bytes | str, secret: str | bytes, msg_id: str, timestamp: int | None = None
) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for `body` sent as `msg_id` at
    `timestamp` (Unix seconds, default now): what a sender puts in the header."""
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    digest = _signature(_key(secret), msg_id, ts, _as_bytes(body))
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook and return its JSON body.

    `body` must be the raw request body, exactly as received (not re-serialized JSON);
    `headers` any mapping of the request's headers (names in any case); `secret` the
    endpoint's `whsec_...` secret. Raise WebhookVerificationError when a header is missing
    or malformed, the timestamp is more than `tolerance_s` seconds away from `now` (default
    the current time: a replay guard), no `v1` signature matches (compared in constant
    time), or the body is not a JSON object.
    """
    key = _key(secret)  # a secret that is not one is the caller's error, whatever was sent
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, timestamp, signatures = _headers(lowered)
    _check_time(timestamp, time.time() if now is None else now, tolerance_s)
    raw = _as_bytes(body)
    _check_signature(_signature(key, msg_id, timestamp, raw), signatures)
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise WebhookVerificationError("the webhook body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the webhook body is not a JSON object")
    return payload


def _headers(lowered: Mapping[str, str]) -> tuple[str, str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature`, each required."""
    names = ("webhook-id", "webhook-timestamp", "webhook-signature")
    values = [lowered.get(name, "").strip() for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    return values[0], values[1], values[2]


def _check_time(timestamp: str, current: float, tolerance_s: float) -> None:
    """The replay guard: sent within `tolerance_s` of `current`."""
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number of seconds") from None
    if not math.isfinite(sent_at):
        raise WebhookVerificationError("webhook-timestamp is not a number of seconds")
    if sent_at < current - tolerance_s:
        raise WebhookVerificationError("the webhook timestamp is too old")
    if sent_at > current + tolerance_s:
        raise WebhookVerificationError("the webhook timestamp is in the future")


def _check_signature(expected: bytes, signatures: str) -> None:
    """One `v1` entry of `signatures` is `expected`, each compared in constant time."""
    matched = False
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue  # another scheme (v1a: asymmetric) or a malformed entry
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError("no matching signature")
