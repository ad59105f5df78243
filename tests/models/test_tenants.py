"""Creating tenants: names the database can store."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from models.accounts.tenants import MAX_NAME_CHARS, create_tenant
from models.errors import ConfigError


def test_a_name_at_its_bound_is_stored(engine: Engine) -> None:
    tenant, _ = create_tenant(engine, "n" * MAX_NAME_CHARS)
    assert tenant.name == "n" * MAX_NAME_CHARS


@pytest.mark.parametrize("name", ["", "   ", "n" * (MAX_NAME_CHARS + 1), "a\x00b", "a\nb"])
def test_a_name_the_database_would_refuse_is_a_clear_error(engine: Engine, name: str) -> None:
    with pytest.raises(ConfigError, match="tenant name"):
        create_tenant(engine, name)
