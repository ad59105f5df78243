"""Fixtures the worker tests share; plain helpers are in tests/worker/factories.py."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount, Tenant
from tests.worker.factories import make_account


@pytest.fixture
def account(engine: Engine, tenant: Tenant, vault: Vault) -> ConnectedAccount:
    """A Slack account of this test's tenant."""
    return make_account(engine, tenant, vault)
