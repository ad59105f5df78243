"""Secrets at rest: API keys are hashed, credentials encrypted with MultiFernet.

The first key of PASSTHRU_ENCRYPTION_KEYS encrypts; every key decrypts, so keys rotate by
putting a new key first and re-encrypting.

Each ciphertext is bound to its row: the plaintext is `{"bound_to": row id, "value": ...}`,
and decrypting checks the id, so a ciphertext copied onto another row (one tenant's
credentials onto another tenant's account) is refused. Ciphertexts written before binding
hold the bare value; they are still read, and `passthru rotate-keys` binds them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from models.errors import ConfigError, CredentialsError, SecretOfAnotherRow

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


# The keys of a bound plaintext. A value written before binding never has them at its top
# level: credentials forbid unknown fields, and webhook secrets have fields of their own.
_BOUND_TO = "bound_to"
_VALUE = "value"


@dataclass(frozen=True)
class Opened:
    value: dict[str, Any]
    bound: bool  # False: written before ciphertexts were bound to their rows


class Vault:
    """Encrypts and decrypts JSON-able secrets, each bound to the id of the row holding it."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError(
                "PASSTHRU_ENCRYPTION_KEYS is empty: set it to one or more comma-separated "
                "Fernet keys (make one with: passthru keys generate)"
            )
        try:
            fernets = [Fernet(k.encode()) for k in keys]
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "PASSTHRU_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64 bytes; make one with: passthru keys generate)"
            ) from exc
        self._fernet = MultiFernet(fernets)
        self._first = fernets[0]

    def encrypt(self, value: dict[str, Any], *, bound_to: str) -> str:
        """`value` encrypted with the first key, readable only as the secret of row `bound_to`."""
        if not bound_to:
            raise ValueError("a secret is bound to the id of its row; none given")
        return self._fernet.encrypt(orjson.dumps({_BOUND_TO: bound_to, _VALUE: value})).decode()

    def decrypt(self, token: str, *, bound_to: str) -> dict[str, Any]:
        """The value of row `bound_to`'s ciphertext. Raises CredentialsError when no key opens
        it, and SecretOfAnotherRow when it was encrypted for another row."""
        return _open(self._fernet, token, bound_to).value

    def rotate(self, token: str, *, bound_to: str) -> tuple[str, Opened]:
        """The same value encrypted again with the first key and bound to `bound_to` (a
        ciphertext written before binding is bound now), and what the old one held."""
        opened = _open(self._fernet, token, bound_to)
        return self.encrypt(opened.value, bound_to=bound_to), opened

    def is_current(self, token: str, *, bound_to: str) -> bool:
        """True if the first key alone opens `token` and it is bound to `bound_to`: once every
        row is current, the other keys may be removed."""
        try:
            return _open(self._first, token, bound_to).bound
        except CredentialsError:
            return False


def _open(fernet: Fernet | MultiFernet, token: str, bound_to: str) -> Opened:
    try:
        data = orjson.loads(fernet.decrypt(token.encode()))
    except InvalidToken as exc:
        raise CredentialsError(
            "the stored secret cannot be decrypted with any key in PASSTHRU_ENCRYPTION_KEYS"
        ) from exc
    except orjson.JSONDecodeError as exc:
        raise CredentialsError("the stored secret is not JSON") from exc
    if not isinstance(data, dict):
        raise CredentialsError("the stored secret is not an object")
    if _BOUND_TO not in data:
        return Opened(data, bound=False)
    if data[_BOUND_TO] != bound_to:
        # The other row's id is not named: it may be another tenant's.
        raise SecretOfAnotherRow(
            "the stored secret was encrypted for another row and copied onto this one: refused"
        )
    value = data.get(_VALUE)
    if not isinstance(value, dict):
        raise CredentialsError("the stored secret is not an object")
    return Opened(value, bound=True)


@lru_cache(maxsize=4)
def vault_for(keys: tuple[str, ...]) -> Vault:
    return Vault(list(keys))
