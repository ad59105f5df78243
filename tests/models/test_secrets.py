"""Secrets at rest: the Vault (MultiFernet, rotation) and API-key hashing."""

from __future__ import annotations

import pytest

from models.errors import ConfigError, CredentialsError
from models.secrets import (
    API_KEY_PREFIX,
    Vault,
    api_key_matches,
    generate_encryption_key,
    hash_api_key,
    new_api_key,
)

SECRET = {"access_token": "xoxb-secret-token", "refresh_token": "r", "expires_at": 12.5}


def test_round_trip(vault: Vault) -> None:
    token = vault.encrypt(SECRET)
    assert "xoxb-secret-token" not in token
    assert vault.decrypt(token) == SECRET


def test_encryption_is_not_deterministic(vault: Vault) -> None:
    assert vault.encrypt(SECRET) != vault.encrypt(SECRET)


def test_rotation_with_multifernet() -> None:
    # Given a value encrypted under key A
    key_a, key_b = generate_encryption_key(), generate_encryption_key()
    old_token = Vault([key_a]).encrypt(SECRET)
    # When B is put first and A kept
    rotating = Vault([key_b, key_a])
    # Then the old value still decrypts
    assert rotating.decrypt(old_token) == SECRET
    # and rotate() re-encrypts it under B, which alone can read it
    new_token = rotating.rotate(old_token)
    assert new_token != old_token
    assert Vault([key_b]).decrypt(new_token) == SECRET
    with pytest.raises(CredentialsError):
        Vault([key_a]).decrypt(new_token)
    # and new values are encrypted with the first key
    assert Vault([key_b]).decrypt(rotating.encrypt(SECRET)) == SECRET


def test_wrong_key_is_a_credentials_error(vault: Vault) -> None:
    token = vault.encrypt(SECRET)
    with pytest.raises(CredentialsError):
        Vault([generate_encryption_key()]).decrypt(token)


def test_garbage_token_is_a_credentials_error(vault: Vault) -> None:
    with pytest.raises(CredentialsError):
        vault.decrypt("not-a-fernet-token")


def test_non_object_payload_is_a_credentials_error(vault: Vault, encryption_key: str) -> None:
    from cryptography.fernet import Fernet

    token = Fernet(encryption_key.encode()).encrypt(b"[1, 2]").decode()
    with pytest.raises(CredentialsError):
        vault.decrypt(token)


def test_no_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PASSTHRU_ENCRYPTION_KEYS"):
        Vault([])


@pytest.mark.parametrize("bad", ["garbage", "", "a" * 44, generate_encryption_key()[:-4]])
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
