"""Secrets at rest: API keys are hashed, credentials encrypted with MultiFernet.

The first key of PASSTHRU_ENCRYPTION_KEYS encrypts; every key decrypts, so keys rotate by
putting a new key first and re-encrypting.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from models.errors import ConfigError, CredentialsError

API_KEY_PREFIX = "pt_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """SHA-256 is enough: keys carry 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def api_key_matches(api_key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(api_key), stored_hash)


def generate_encryption_key() -> str:
    return Fernet.generate_key().decode()


class Vault:
    """Encrypts and decrypts JSON-able secrets."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError(
                "PASSTHRU_ENCRYPTION_KEYS is empty: set it to one or more comma-separated "
                "Fernet keys (make one with: passthru keys generate)"
            )
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "PASSTHRU_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64 bytes; make one with: passthru keys generate)"
            ) from exc

    def encrypt(self, value: dict[str, Any]) -> str:
        return self._fernet.encrypt(orjson.dumps(value)).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            data = orjson.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise CredentialsError(
                "credentials cannot be decrypted with any key in PASSTHRU_ENCRYPTION_KEYS"
            ) from exc
        if not isinstance(data, dict):
            raise CredentialsError("stored credentials are not an object")
        return data

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()


@lru_cache(maxsize=4)
def vault_for(keys: tuple[str, ...]) -> Vault:
    return Vault(list(keys))
