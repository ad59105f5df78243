"""Secrets at rest: the Vault (MultiFernet, rotation) and API-key hashing."""

from __future__ import annotations

import orjson
import pytest
from cryptography.fernet import Fernet

from models.crypto.secrets import (
    API_KEY_PREFIX,
    Vault,
    api_key_matches,
    generate_encryption_key,
    hash_api_key,
    new_api_key,
)
from models.errors import ConfigError, CredentialsError, SecretOfAnotherRow

SECRET = {"access_token": "xoxb-secret-token", "refresh_token": "r", "expires_at": 12.5}
ROW = "ca_01row"
OTHER_ROW = "ca_02other"


def _unbound(key: str, value: object) -> str:
    """A ciphertext as passthru wrote them before binding: the bare value."""
    return Fernet(key.encode()).encrypt(orjson.dumps(value)).decode()


def test_round_trip(vault: Vault) -> None:
    token = vault.encrypt(SECRET, bound_to=ROW)
    assert "xoxb-secret-token" not in token
    assert vault.decrypt(token, bound_to=ROW) == SECRET


def test_encryption_is_not_deterministic(vault: Vault) -> None:
    assert vault.encrypt(SECRET, bound_to=ROW) != vault.encrypt(SECRET, bound_to=ROW)


def test_a_ciphertext_copied_onto_another_row_is_refused(vault: Vault) -> None:
    # Given row A's secret
    token = vault.encrypt(SECRET, bound_to=ROW)
    # When it is read as row B's (copied there in the database)
    # Then it is refused, saying why, without naming the row it came from
    with pytest.raises(SecretOfAnotherRow, match="another row") as refused:
        vault.decrypt(token, bound_to=OTHER_ROW)
    assert ROW not in str(refused.value)
    assert isinstance(refused.value, CredentialsError)
    # and rotating it onto row B is refused too
    with pytest.raises(SecretOfAnotherRow):
        vault.rotate(token, bound_to=OTHER_ROW)
    assert not vault.is_current(token, bound_to=OTHER_ROW)


def test_a_secret_is_always_bound_to_a_row(vault: Vault) -> None:
    with pytest.raises(ValueError, match="bound"):
        vault.encrypt(SECRET, bound_to="")


def test_a_ciphertext_written_before_binding_is_read_and_bound_by_rotate(
    encryption_key: str, vault: Vault
) -> None:
    # Given a ciphertext of the bare value, as written before binding
    legacy = _unbound(encryption_key, SECRET)
    # Then it still reads, on any row, but is not current
    assert vault.decrypt(legacy, bound_to=ROW) == SECRET
    assert not vault.is_current(legacy, bound_to=ROW)
    # When it is rotated for its row
    token, opened = vault.rotate(legacy, bound_to=ROW)
    # Then it was unbound, and is now bound to that row alone
    assert opened.value == SECRET
    assert not opened.bound
    assert vault.is_current(token, bound_to=ROW)
    assert vault.decrypt(token, bound_to=ROW) == SECRET
    with pytest.raises(SecretOfAnotherRow):
        vault.decrypt(token, bound_to=OTHER_ROW)


def test_rotation_with_multifernet() -> None:
    # Given a value encrypted under key A
    key_a, key_b = generate_encryption_key(), generate_encryption_key()
    old_token = Vault([key_a]).encrypt(SECRET, bound_to=ROW)
    # When B is put first and A kept
    rotating = Vault([key_b, key_a])
    # Then the old value still decrypts, but is not current
    assert rotating.decrypt(old_token, bound_to=ROW) == SECRET
    assert not rotating.is_current(old_token, bound_to=ROW)
    # and rotate() re-encrypts it under B, which alone can read it
    new_token, opened = rotating.rotate(old_token, bound_to=ROW)
    assert opened.bound
    assert new_token != old_token
    assert rotating.is_current(new_token, bound_to=ROW)
    assert Vault([key_b]).decrypt(new_token, bound_to=ROW) == SECRET
    with pytest.raises(CredentialsError):
        Vault([key_a]).decrypt(new_token, bound_to=ROW)
    # and new values are encrypted with the first key
    assert Vault([key_b]).decrypt(rotating.encrypt(SECRET, bound_to=ROW), bound_to=ROW) == SECRET


def test_wrong_key_is_a_credentials_error(vault: Vault) -> None:
    token = vault.encrypt(SECRET, bound_to=ROW)
    with pytest.raises(CredentialsError, match="PASSTHRU_ENCRYPTION_KEYS"):
        Vault([generate_encryption_key()]).decrypt(token, bound_to=ROW)


def test_garbage_token_is_a_credentials_error(vault: Vault) -> None:
    with pytest.raises(CredentialsError):
        vault.decrypt("not-a-fernet-token", bound_to=ROW)


@pytest.mark.parametrize(
    "plaintext", [b"[1, 2]", b"not json", b'{"bound_to": "ca_01row", "value": [1]}']
)
def test_non_object_payload_is_a_credentials_error(
    vault: Vault, encryption_key: str, plaintext: bytes
) -> None:
    token = Fernet(encryption_key.encode()).encrypt(plaintext).decode()
    with pytest.raises(CredentialsError):
        vault.decrypt(token, bound_to=ROW)


def test_no_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PASSTHRU_ENCRYPTION_KEYS"):
        Vault([])


@pytest.mark.parametrize(
    "bad",
    ["garbage", "", "a" * 44, pytest.param(generate_encryption_key()[:-4], id="truncated-key")],
)
def test_garbage_key_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="PASSTHRU_ENCRYPTION_KEYS"):
        Vault([generate_encryption_key(), bad])


def test_api_key_hash_and_match() -> None:
    key = new_api_key()
    assert key.startswith(API_KEY_PREFIX)
    stored = hash_api_key(key)
    assert stored != key
    assert len(stored) == 64
    assert hash_api_key(key) == stored
    assert api_key_matches(key, stored)
    assert not api_key_matches(key + "x", stored)
    assert not api_key_matches(new_api_key(), stored)


def test_new_api_keys_are_unique() -> None:
    assert len({new_api_key() for _ in range(200)}) == 200
