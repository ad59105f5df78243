"""Account status changes through the API follow the account state machine, and only from
the status the request read."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

import api.account_store
from api.account_store import update_account
from models.accounts.states import AccountStatus
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount, Tenant
from models.errors import ApiError
from tests.worker.factories import make_account

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]


def _patch(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    vault: Vault,
    account_id: str,
    change: dict[str, Any],
) -> ConnectedAccount:
    """What PATCH /connected-accounts/{id} does with a body of `credentials` and/or `status`."""
    return update_account(
        engine,
        tenant,
        catalog,
        vault,
        account_id,
        credentials=change.get("credentials"),
        config=None,
        status=change.get("status"),
    )


@pytest.mark.parametrize(
    "change",
    [{"status": "disabled"}, {"credentials": {"access_token": "xoxb-new-token"}}],
    ids=["disable", "new_credentials"],
)
def test_a_patch_whose_account_was_revoked_meanwhile_changes_nothing(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any],
) -> None:
    # Given an active account, revoked by a worker just after the PATCH read it
    account = make_account(engine, tenant, vault)
    read = api.account_store.get_account

    def read_then_revoked(session: Session, tenant: Tenant, account_id: str) -> ConnectedAccount:
        found = read(session, tenant, account_id)
        with engine.begin() as worker:  # another process's transaction, committed
            worker.execute(
                _accounts.update()
                .where(_accounts.c.id == account_id)
                .values(status=AccountStatus.NEEDS_REAUTH)
            )
        return found

    monkeypatch.setattr(api.account_store, "get_account", read_then_revoked)
    # When the PATCH writes
    with pytest.raises(ApiError) as refused:
        _patch(engine, tenant, catalog, vault, account.id, change)
    # Then it is a 409, and the account is as the revocation left it
    assert (refused.value.status_code, refused.value.error) == (409, "account_changed")
    with Session(engine) as session:
        stored = session.get(ConnectedAccount, account.id)
        assert stored is not None
        assert stored.status is AccountStatus.NEEDS_REAUTH
        assert stored.credentials_enc == account.credentials_enc


@pytest.mark.parametrize(
    ("start", "change", "end"),
    [
        (AccountStatus.ACTIVE, {"status": "disabled"}, AccountStatus.DISABLED),
        (AccountStatus.DISABLED, {"status": "active"}, AccountStatus.ACTIVE),
        (AccountStatus.NEEDS_REAUTH, {"status": "disabled"}, AccountStatus.DISABLED),
        (AccountStatus.NEEDS_REAUTH, {"credentials": {"access_token": "x"}}, AccountStatus.ACTIVE),
        (AccountStatus.DISABLED, {"credentials": {"access_token": "x"}}, AccountStatus.DISABLED),
        (AccountStatus.ACTIVE, {"status": "active"}, AccountStatus.ACTIVE),
    ],
    ids=[
        "disable",
        "enable",
        "disable_needs_reauth",
        "new_credentials_clear_needs_reauth",
        "new_credentials_keep_disabled",
        "same_status",
    ],
)
def test_a_patch_moves_the_account_as_its_machine_allows(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    vault: Vault,
    start: AccountStatus,
    change: dict[str, Any],
    end: AccountStatus,
) -> None:
    # Given an account in `start`
    account = make_account(engine, tenant, vault)
    with engine.begin() as conn:
        conn.execute(_accounts.update().where(_accounts.c.id == account.id).values(status=start))
    # When it is patched
    updated = _patch(engine, tenant, catalog, vault, account.id, change)
    # Then it is in `end`, as answered and as stored
    assert updated.status is end
    with Session(engine) as session:
        stored = session.get(ConnectedAccount, account.id)
        assert stored is not None
        assert stored.status is end
