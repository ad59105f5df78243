"""Creating tenants: names the database can store, unique when asked; listing them."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from models.accounts.tenants import MAX_NAME_CHARS, create_tenant, list_tenants
from models.crypto.secrets import Vault
from models.errors import ConfigError
from tests.worker.factories import make_account, make_call


def test_a_name_at_its_bound_is_stored(engine: Engine) -> None:
    tenant, _ = create_tenant(engine, "n" * MAX_NAME_CHARS)
    assert tenant.name == "n" * MAX_NAME_CHARS


@pytest.mark.parametrize("name", ["", "   ", "n" * (MAX_NAME_CHARS + 1), "a\x00b", "a\nb"])
def test_a_name_the_database_would_refuse_is_a_clear_error(engine: Engine, name: str) -> None:
    with pytest.raises(ConfigError, match="tenant name"):
        create_tenant(engine, name)


def test_a_unique_name_is_refused_when_taken(own_engine: Engine) -> None:
    create_tenant(own_engine, "acme")
    with pytest.raises(ConfigError, match="exists already"):
        create_tenant(own_engine, "acme", unique=True)
    assert create_tenant(own_engine, "acme-2", unique=True)[0].name == "acme-2"


def test_tenants_are_listed_with_their_last_call(own_engine: Engine, vault: Vault) -> None:
    # Given two tenants, one of which submitted a call
    quiet, _ = create_tenant(own_engine, "quiet")
    busy, key = create_tenant(own_engine, "busy")
    call = make_call(own_engine, make_account(own_engine, busy, vault))
    # When listed
    listed = list_tenants(own_engine)
    # Then oldest first, with when each last called, and nothing of their keys
    assert [(t.id, t.name) for t in listed] == [(quiet.id, "quiet"), (busy.id, "busy")]
    assert listed[0].last_call_at is None
    assert listed[1].last_call_at == call.created_at
    assert key not in repr(listed)
