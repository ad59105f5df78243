"""Standard Webhooks (https://www.standardwebhooks.com/): secrets, signatures, event names.

A message is signed with HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed
with the base64-decoded part of a `whsec_` secret; `webhook-signature` lists `v1,<base64>`
for each secret in use (two while a rotated-out secret is still honoured)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_secrets
import time
from collections.abc import Sequence
from typing import Any

from models.crypto.secrets import Vault

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
# After a rotation, the previous secret still signs for this long.
PREVIOUS_SECRET_TTL_S = 24 * 3600.0

EVENT_OF_STATUS = {
    "completed": "function_call.completed",
    "failed": "function_call.failed",
    "cancelled": "function_call.cancelled",
}
BATCH_EVENT = "batch.completed"
ACCOUNT_EVENT = "connection.created"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def message_id(call_or_batch_id: str) -> str:
    """The stable `webhook-id` of the event for a call (`fc_...`), a batch (`bt_...`) or a
    connected account (`ca_...`)."""
    return "msg_" + call_or_batch_id


def store_secrets(
    vault: Vault,
    current: str,
    previous: str | None = None,
    *,
    tenant_id: str,
    shown: bool = True,
) -> str:
    """The tenant's secrets encrypted, bound to its endpoint row (keyed by `tenant_id`).
    `shown=False` for a secret made before the tenant asked for one (a callback_url
    delivered before any PUT /webhook-endpoint): the next PUT shows it."""
    until = time.time() + PREVIOUS_SECRET_TTL_S if previous else None
    return vault.encrypt(
        {"current": current, "previous": previous, "previous_until": until, "shown": shown},
        bound_to=tenant_id,
    )


def unshown_secret(vault: Vault, secrets_enc: str, *, tenant_id: str) -> str | None:
    """The current secret if the tenant has never been shown it."""
    data: dict[str, Any] = vault.decrypt(secrets_enc, bound_to=tenant_id)
    return None if data.get("shown", True) else str(data["current"])


def signing_secrets(vault: Vault, secrets_enc: str, now_s: float, *, tenant_id: str) -> list[str]:
    """The secrets to sign with now: the current one, and the previous one for a day."""
    data: dict[str, Any] = vault.decrypt(secrets_enc, bound_to=tenant_id)
    out = [str(data["current"])]
    if data.get("previous") and (data.get("previous_until") or 0) > now_s:
        out.append(str(data["previous"]))
    return out
